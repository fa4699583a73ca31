"""Contract tests: ClinikUI's client against the sandbox served over a real socket.

Every endpoint the product uses, every documented error code, pagination across several pages,
the rate-limit headers, and each fault switch producing the exception class the client promises.
The sandbox's own store is the ground truth for "was it stored?".
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

import pytest

from reports import clinikapi
from reports.clinikapi import ClientConfig, ClinikAPI, Code, NewLab
from reports.sandbox import Fault, KeyInfo, Sandbox, SandboxConfig
from reports.sandbox.seed import FIXED_PATIENT_ID
from reports.sandbox.server import RunningSandbox, serve_in_thread

KEY = "clk_test_contracttests"
HEMOGLOBIN = Code("http://loinc.org", "58410-2", "CBC panel - Blood by Automated count")


@pytest.fixture
def running() -> Iterator[RunningSandbox]:
    server = serve_in_thread(Sandbox(SandboxConfig()))
    yield server
    server.stop()


def client_for(url: str, key: str = KEY, **overrides: object) -> ClinikAPI:
    """A client as production builds it, with short timeouts and a fake sleep."""
    options: dict[str, object] = {
        "connect_timeout": 0.5,
        "read_timeout": 0.5,
        "write_timeout": 0.5,
        "pool_timeout": 0.5,
        "deadline": 2.0,
        **overrides,
    }
    config = ClientConfig(url, key, **options)  # type: ignore[arg-type]
    delays: list[float] = []
    return ClinikAPI(config, sleep=delays.append, rng=random.Random(3))


@pytest.fixture
def api(running: RunningSandbox) -> Iterator[ClinikAPI]:
    client = client_for(running.url)
    yield client
    client.close()


def a_lab(**changes: object) -> NewLab:
    fields: dict[str, object] = {
        "status": "preliminary",
        "code": HEMOGLOBIN,
        "patient_id": FIXED_PATIENT_ID,
        "category": "LAB",
        "effective_date_time": datetime(2026, 3, 2, 7, 40, tzinfo=UTC),
        "conclusion": "Mild normocytic anaemia.",
        **changes,
    }
    return NewLab(**fields)  # type: ignore[arg-type]


def stored_labs(running: RunningSandbox) -> int:
    return len(running.sandbox.store.created("labs"))


def lab_posts(running: RunningSandbox) -> int:
    return sum(
        1 for r in running.sandbox.store.requests if r.method == "POST" and r.path == "/v1/labs"
    )


# --- every endpoint --------------------------------------------------------------------------


def test_health_answers_without_a_key(api):
    assert api.health().is_ok


def test_a_lab_goes_through_create_read_search_update_and_delete(api, running):
    created = api.create_lab(a_lab())

    read = api.get_lab(created.lab.id)
    found = api.search_labs(patient_id=FIXED_PATIENT_ID, status="preliminary")
    amended = api.update_lab(
        created.lab.id, clinikapi.LabChanges(status="amended", conclusion="Amended: iron low.")
    )
    api.delete_lab(created.lab.id)

    assert created.meta.status == 201 and created.meta.request_id.startswith("req_")
    assert read.code == HEMOGLOBIN and read.patient_id == FIXED_PATIENT_ID
    assert created.lab.id in [lab.id for lab in found.items]
    assert (amended.lab.status, amended.lab.conclusion) == ("amended", "Amended: iron low.")
    with pytest.raises(clinikapi.NotFound) as deleted:
        api.get_lab(created.lab.id)
    assert deleted.value.code == "NOT_FOUND"
    assert stored_labs(running) == 1


def test_patients_are_searched_by_name_and_birth_date_and_read_by_id(api):
    by_name = api.search_patients(name="okafor")
    by_birth_date = api.search_patients(birth_date=date(1984, 11, 9))

    patient = api.get_patient(FIXED_PATIENT_ID)

    assert FIXED_PATIENT_ID in [p.id for p in by_name.items]
    assert [p.id for p in by_birth_date.items] == [FIXED_PATIENT_ID]
    assert (patient.last_name, patient.birth_date) == ("Okafor", date(1984, 11, 9))


def test_encounters_observations_and_specimens_belong_to_the_patient(api):
    encounters = api.search_encounters(patient_id=FIXED_PATIENT_ID)
    observations = api.search_observations(patient_id=FIXED_PATIENT_ID)
    specimens = api.search_specimens(patient_id=FIXED_PATIENT_ID)

    encounter = api.get_encounter(encounters.items[0].id)
    observation = api.get_observation(observations.items[0].id)
    specimen = api.get_specimen(specimens.items[0].id)

    assert {encounter.patient_id, observation.patient_id, specimen.patient_id} == {FIXED_PATIENT_ID}
    assert observation.code is not None and observation.code.system == "http://loinc.org"


def test_practitioners_are_searched_by_name_and_read_by_id(api):
    everyone = list(clinikapi.iter_all(api.search_practitioners))
    someone = everyone[0]

    by_name = api.search_practitioners(name=someone.last_name)
    read = api.get_practitioner(someone.id)

    assert someone.id in [p.id for p in by_name.items]
    assert read.display_name == someone.display_name


# --- pagination and rate-limit headers -------------------------------------------------------


def test_pagination_follows_the_cursor_across_several_pages(api, running):
    first = api.search_observations(patient_id=FIXED_PATIENT_ID, count=4)

    everything = list(clinikapi.iter_all(api.search_observations, patient_id=FIXED_PATIENT_ID))
    paged = list(clinikapi.iter_all(api.search_observations, patient_id=FIXED_PATIENT_ID, count=4))

    assert first.total is not None and first.total >= 10 and first.has_more
    assert len(everything) == first.total
    assert [o.id for o in paged] == [o.id for o in everything]
    pages = [r for r in running.sandbox.store.requests if "count=4" in r.query]
    assert len(pages) == -(-first.total // 4) + 1  # the single first page, then every page


def test_a_count_above_one_hundred_is_clamped(api):
    page = api.search_observations(patient_id=FIXED_PATIENT_ID, count=500)

    assert len(page.items) <= 100
    assert not page.has_more or len(page.items) == 100


def test_rate_limit_headers_are_read_after_every_call(api):
    api.get_patient(FIXED_PATIENT_ID)
    first = api.last_rate_limit
    api.get_patient(FIXED_PATIENT_ID)
    second = api.last_rate_limit

    assert first is not None and second is not None
    assert first.limit == second.limit == 100
    assert second.remaining == first.remaining - 1
    assert 0 < second.reset_seconds <= 60


# --- every documented error code -------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_info", "code", "exception"),
    [
        (None, "INVALID_KEY", clinikapi.Unauthorized),
        (KeyInfo(revoked=True), "KEY_REVOKED", clinikapi.Unauthorized),
        (KeyInfo(expired=True), "KEY_EXPIRED", clinikapi.Unauthorized),
        (KeyInfo(scope="read"), "FORBIDDEN", clinikapi.Forbidden),
    ],
)
def test_key_problems_are_reported_with_their_code(key_info, code, exception):
    accepted = {"clk_test_someoneelse": KeyInfo()}
    if key_info is not None:
        accepted[KEY] = key_info
    server = serve_in_thread(Sandbox(SandboxConfig(accepted_keys=accepted)))
    api = client_for(server.url)
    try:
        with pytest.raises(exception) as error:
            api.create_lab(a_lab())
    finally:
        api.close()
        server.stop()

    assert error.value.code == code
    assert error.value.request_id and error.value.request_id.startswith("req_")
    assert KEY not in str(error.value) and KEY not in repr(error.value)


@pytest.mark.parametrize(
    ("status", "code", "exception"),
    [
        (401, "UNAUTHORIZED", clinikapi.Unauthorized),
        (401, "INVALID_KEY_FORMAT", clinikapi.Unauthorized),
        (400, "INVALID_JSON", clinikapi.InvalidRequest),
        (400, "METHOD_OVERRIDE_REJECTED", clinikapi.InvalidRequest),
        (409, "CONFLICT", clinikapi.Conflict),
        (413, "PAYLOAD_TOO_LARGE", clinikapi.InvalidRequest),
        (429, "MONTHLY_QUOTA_EXCEEDED", clinikapi.QuotaExceeded),
        (429, "SANDBOX_QUOTA_EXCEEDED", clinikapi.QuotaExceeded),
        (500, "INTERNAL_ERROR", clinikapi.ServerError),
    ],
)
def test_error_answers_our_requests_cannot_provoke_still_map_to_their_class(
    api, running, status, code, exception
):
    # The client never sends a malformed key, bad JSON, an override header or an over-size body,
    # so the sandbox is told to answer with those errors as the real API would.
    running.sandbox.faults.push(Fault.error(status, code, route="GET /v1/patients/*", times=None))

    with pytest.raises(exception) as error:
        api.get_patient(FIXED_PATIENT_ID)

    assert (error.value.status, error.value.code) == (status, code)
    assert error.value.request_id and error.value.request_id.startswith("req_")


def test_a_validation_error_carries_the_field_issues(api):
    with pytest.raises(clinikapi.ValidationFailed) as error:
        api.create_lab({**a_lab().to_payload(), "conclusionCodes": [{"display": "Anemia"}]})

    assert error.value.status == 422 and error.value.code == "VALIDATION_ERROR"
    assert [issue.field for issue in error.value.issues] == ["conclusionCodes.0.code"]


def test_an_unknown_patient_is_not_found(api):
    with pytest.raises(clinikapi.NotFound) as error:
        api.get_patient("pt_doesnotexist0")

    assert (error.value.status, error.value.code) == (404, "NOT_FOUND")


def test_the_per_minute_limit_is_reported_with_when_to_retry():
    server = serve_in_thread(Sandbox(SandboxConfig(rate_limit_per_minute=2)))
    api = client_for(server.url)
    try:
        api.get_patient(FIXED_PATIENT_ID)
        api.get_patient(FIXED_PATIENT_ID)
        with pytest.raises(clinikapi.RateLimited) as error:
            api.create_lab(a_lab())
    finally:
        api.close()
        server.stop()

    assert error.value.code == "RATE_LIMITED"
    assert error.value.retry_after is not None and 1 <= error.value.retry_after <= 60
    assert not isinstance(error.value, clinikapi.QuotaExceeded)


def test_an_over_size_body_is_refused_before_anything_is_sent(api, running):
    huge = a_lab(conclusion="x" * 4000, result_ids=tuple(f"obs_{i:012d}" for i in range(60_000)))

    with pytest.raises(clinikapi.RequestRefused):
        api.create_lab(huge)

    assert lab_posts(running) == 0


def test_an_id_that_could_escape_the_path_is_refused_before_sending(api, running):
    with pytest.raises(clinikapi.RequestRefused):
        api.get_patient("../v1/labs")

    assert not [r for r in running.sandbox.store.requests if "labs" in r.path]


# --- fault switches --------------------------------------------------------------------------


def test_latency_slows_the_answer_but_it_arrives(api, running):
    running.sandbox.faults.push(Fault.latency(150, route="GET /v1/patients/*", times=1))

    patient = api.get_patient(FIXED_PATIENT_ID)

    assert patient.id == FIXED_PATIENT_ID


def test_a_nonsense_retry_after_falls_back_to_the_rate_limit_reset(api, running):
    running.sandbox.faults.push(
        Fault.error(429, "RATE_LIMITED", route="POST /v1/labs", retry_after="soon")
    )

    with pytest.raises(clinikapi.RateLimited) as error:
        api.create_lab(a_lab())

    assert error.value.retry_after is not None and 1 <= error.value.retry_after <= 900
    assert stored_labs(running) == 0


@pytest.mark.parametrize(("when", "stored"), [("before", 0), ("after", 1)])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_on_create_is_an_unknown_outcome_and_never_retried(
    api, running, status, when, stored
):
    running.sandbox.faults.push(Fault.error(status, route="POST /v1/labs", when=when))

    with pytest.raises(clinikapi.ServerError) as error:
        api.create_lab(a_lab())

    assert isinstance(error.value, clinikapi.OutcomeUnknown)
    assert error.value.status == status
    assert lab_posts(running) == 1
    assert stored_labs(running) == stored


@pytest.mark.parametrize(("when", "stored"), [("before", 0), ("after", 1)])
def test_a_timeout_on_create_is_an_unknown_outcome(api, running, when, stored):
    running.sandbox.faults.push(Fault.hang(3.0, route="POST /v1/labs", when=when))

    with pytest.raises(clinikapi.OutcomeUnknown):
        api.create_lab(a_lab())
    running.stop()  # ends the hang, so the sandbox finishes and logs the request

    assert _eventually(lambda: lab_posts(running) == 1)
    assert stored_labs(running) == stored


def _eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Polls a condition that a server thread makes true shortly after the client gave up."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("fault", [Fault.drop, Fault.connection_reset, Fault.garbage])
def test_a_connection_lost_after_storing_is_an_unknown_outcome(api, running, fault):
    running.sandbox.faults.push(fault(route="POST /v1/labs", when="after"))

    with pytest.raises(clinikapi.OutcomeUnknown):
        api.create_lab(a_lab())

    assert lab_posts(running) == 1
    assert stored_labs(running) == 1


def test_a_slow_drip_is_cut_off_by_the_overall_deadline(running):
    # Each byte arrives well within the read timeout; only the overall deadline can stop it.
    api = client_for(running.url, read_timeout=1.0, deadline=1.0, max_read_retries=0)
    running.sandbox.faults.push(Fault.drip(0.2, route="GET /v1/patients/*"))

    try:
        with pytest.raises(clinikapi.DeadlineExceeded):
            api.get_patient(FIXED_PATIENT_ID)
    finally:
        api.close()


def test_a_redirect_is_never_followed(api, running):
    running.sandbox.faults.push(
        Fault.redirect("http://127.0.0.2:9/steal", route="GET /v1/patients/*", times=None)
    )

    with pytest.raises(clinikapi.UnexpectedResponse):
        api.get_patient(FIXED_PATIENT_ID)


def test_a_refused_connection_means_the_request_was_not_sent():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = client_for(f"http://127.0.0.1:{port}")

    with pytest.raises(clinikapi.NotSent):
        api.create_lab(a_lab())


def test_a_read_is_retried_after_a_transient_503(api, running):
    running.sandbox.faults.push(Fault.error(503, route="GET /v1/patients/*", times=1))

    patient = api.get_patient(FIXED_PATIENT_ID)

    reads = [r for r in running.sandbox.store.requests if r.path.startswith("/v1/patients/")]
    assert patient.id == FIXED_PATIENT_ID
    assert [r.status for r in reads] == [503, 200]
