"""The ClinikAPI sandbox against CONTRACT.md: in-process through httpx.WSGITransport, and over a
real loopback socket for the faults that only exist there (drop, reset, hang, drip)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from reports.sandbox import (
    Fault,
    KeyInfo,
    ManualClock,
    Sandbox,
    SandboxConfig,
    SandboxConnectionDropped,
    default_sandbox,
)
from reports.sandbox.seed import FIXED_PATIENT_ID
from reports.sandbox.server import RunningSandbox, serve_in_thread

TEST_KEY = "clk_test_sandboxtests1"
LIVE_KEY = "clk_live_sandboxtests1"
LOINC = "http://loinc.org"
REQUEST_ID = re.compile(r"^req_[a-z0-9]{8}$")
LAB_ID = re.compile(r"^lab_[a-z0-9]{12}$")


def lab_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "final",
        "code": {
            "system": LOINC,
            "code": "58410-2",
            "display": "CBC panel - Blood by Automated count",
        },
        "category": "LAB",
        "patientId": FIXED_PATIENT_ID,
        "effectiveDateTime": "2026-03-02T07:40:00Z",
        "conclusion": "Mild normocytic anaemia.",
    }
    body.update(overrides)
    return body


def diagnostics(response: httpx.Response) -> list[str]:
    return [issue["diagnostics"] for issue in response.json().get("issues", [])]


def in_process(sandbox: Sandbox, key: str | None = TEST_KEY) -> httpx.Client:
    headers = {"x-api-key": key} if key else {}
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    return httpx.Client(transport=transport, base_url="http://sandbox.test", headers=headers)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> Sandbox:
    return Sandbox(SandboxConfig(clock=clock.monotonic, now=clock.now))


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with in_process(sandbox) as client:
        yield client


@pytest.fixture
def running(sandbox: Sandbox) -> Iterator[RunningSandbox]:
    with serve_in_thread(sandbox) as served:
        yield served


@pytest.fixture
def socket_api(running: RunningSandbox) -> Iterator[httpx.Client]:
    timeout = httpx.Timeout(2.0, read=0.3)
    with httpx.Client(
        base_url=running.url, headers={"x-api-key": TEST_KEY}, timeout=timeout
    ) as client:
        yield client


# --- auth (§2, §7.3) ---------------------------------------------------------------------------


def test_a_request_without_a_key_is_unauthorized_with_a_request_id(sandbox: Sandbox) -> None:
    client = in_process(sandbox, key=None)

    response = client.get("/v1/labs")

    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "UNAUTHORIZED"
    assert body["error"] == "Unauthorized"
    assert REQUEST_ID.match(body["requestId"])
    assert response.headers["X-Request-Id"] == body["requestId"]


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("abc123", "INVALID_KEY_FORMAT"),
        ("clk_prod_abc123", "INVALID_KEY_FORMAT"),
        ("clk_test_", "INVALID_KEY"),
        ("clk_test_abc-123", "INVALID_KEY"),
    ],
)
def test_malformed_keys_get_the_documented_401_codes(sandbox: Sandbox, key: str, code: str) -> None:
    client = in_process(sandbox, key=key)

    response = client.get("/v1/labs")

    assert response.status_code == 401
    assert response.json()["code"] == code
    assert key not in response.text


@pytest.mark.parametrize(
    ("key", "method", "status", "code"),
    [
        ("clk_test_unknown", "GET", 401, "INVALID_KEY"),
        ("clk_test_revoked", "GET", 401, "KEY_REVOKED"),
        ("clk_test_expired", "GET", 401, "KEY_EXPIRED"),
        ("clk_test_pastexpiry", "GET", 401, "KEY_EXPIRED"),
        ("clk_test_readonly", "POST", 403, "FORBIDDEN"),
        ("clk_test_writeonly", "GET", 403, "FORBIDDEN"),
    ],
)
def test_configured_keys_are_revoked_expired_or_scoped(
    clock: ManualClock, key: str, method: str, status: int, code: str
) -> None:
    keys = {
        "clk_test_revoked": KeyInfo(revoked=True),
        "clk_test_expired": KeyInfo(expired=True),
        "clk_test_pastexpiry": KeyInfo(expires_at=clock.now() - timedelta(seconds=1)),
        "clk_test_readonly": KeyInfo(scope="read"),
        "clk_test_writeonly": KeyInfo(scope="write"),
    }
    sandbox = Sandbox(SandboxConfig(accepted_keys=keys, clock=clock.monotonic, now=clock.now))
    client = in_process(sandbox, key=key)

    response = client.request(method, "/v1/labs", json=lab_body())

    assert response.status_code == status
    assert response.json()["code"] == code
    assert sandbox.store.created("labs") == []


def test_a_read_only_key_can_read(clock: ManualClock) -> None:
    keys = {"clk_test_readonly": KeyInfo(scope="read")}
    sandbox = Sandbox(SandboxConfig(accepted_keys=keys, clock=clock.monotonic, now=clock.now))

    response = in_process(sandbox, key="clk_test_readonly").get("/v1/patients")

    assert response.status_code == 200


def test_auth_is_checked_before_override_headers_and_json(sandbox: Sandbox) -> None:
    client = in_process(sandbox, key=None)

    response = client.post(
        "/v1/labs",
        content=b"{not json",
        headers={"Content-Type": "application/json", "X-HTTP-Method-Override": "DELETE"},
    )

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


def test_health_and_metadata_need_no_key(sandbox: Sandbox) -> None:
    client = in_process(sandbox, key=None)

    health = client.get("/health")
    metadata = client.get("/v1/metadata")

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert "data" not in health.json()
    assert metadata.status_code == 200
    assert metadata.headers["Content-Type"].startswith("application/fhir+json")
    assert metadata.json()["resourceType"] == "CapabilityStatement"


# --- request conventions (§3) ------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_method_override_headers_are_refused(
    api: httpx.Client, sandbox: Sandbox, header: str
) -> None:
    response = api.post("/v1/labs", json=lab_body(), headers={header: "POST"})

    assert response.status_code == 400
    assert response.json()["code"] == "METHOD_OVERRIDE_REJECTED"
    assert sandbox.store.created("labs") == []


@pytest.mark.parametrize("raw", [b"{not json", b'{"status": NaN}', b"\xff\xfe"])
def test_unparsable_json_is_invalid_json(api: httpx.Client, raw: bytes) -> None:
    response = api.post("/v1/labs", content=raw, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/fhir+json", "application/json-patch+json; charset=utf-8"],
)
def test_the_three_json_media_types_are_accepted(api: httpx.Client, content_type: str) -> None:
    response = api.post(
        "/v1/labs", content=json.dumps(lab_body()), headers={"Content-Type": content_type}
    )

    assert response.status_code == 201


def test_a_body_over_one_mebibyte_is_413_and_one_at_the_limit_is_not(api: httpx.Client) -> None:
    base = json.dumps(lab_body(conclusion=""))
    at_limit = base.replace(
        '"conclusion": ""', '"conclusion": "' + "x" * (1_048_576 - len(base)) + '"'
    )
    assert len(at_limit.encode()) == 1_048_576
    over = at_limit.replace('"x', '"xx', 1)
    headers = {"Content-Type": "application/json"}

    limit_response = api.post("/v1/labs", content=at_limit, headers=headers)
    over_response = api.post("/v1/labs", content=over, headers=headers)

    assert limit_response.status_code == 422
    assert over_response.status_code == 413
    assert over_response.json()["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/unknown"),
        ("DELETE", "/v1/patients/pt_x"),
        ("PUT", "/v1/labs/lab_x"),
        ("GET", "/v2/labs"),
    ],
)
def test_unknown_routes_are_404_not_found(api: httpx.Client, method: str, path: str) -> None:
    response = api.request(method, path)

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


# --- envelope, ids, CRUD (§4, §11) -------------------------------------------------------------


def test_create_answers_201_with_the_envelope_and_every_header(api: httpx.Client) -> None:
    response = api.post("/v1/labs", json=lab_body())

    assert response.status_code == 201
    data, meta = response.json()["data"], response.json()["meta"]
    assert LAB_ID.match(data["id"])
    assert data["createdAt"] == data["updatedAt"] == "2026-03-02T09:00:00.000Z"
    assert data["conclusion"] == "Mild normocytic anaemia."
    assert meta["requestId"] == response.headers["X-Request-Id"]
    assert REQUEST_ID.match(meta["requestId"])
    assert meta["status"] == 201
    assert (meta["rateLimitTotal"], meta["rateLimitRemaining"]) == (100, 99)
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.headers["X-RateLimit-Remaining"] == "99"
    assert response.headers["X-RateLimit-Reset"] == "60"
    assert response.headers["X-Timestamp"] == "2026-03-02T09:00:00.000Z"
    assert response.headers["X-Quota-Used"] == "1"
    assert response.headers["X-Quota-Reset"] == "2026-04-01T00:00:00.000Z"
    assert response.headers["X-Sandbox-Remaining"] == "999"


def test_a_lab_can_be_read_patched_and_deleted(
    api: httpx.Client, sandbox: Sandbox, clock: ManualClock
) -> None:
    lab_id = api.post("/v1/labs", json=lab_body(resultIds=["obs_a", "obs_b"])).json()["data"]["id"]
    clock.advance(5)

    patched = api.patch(
        f"/v1/labs/{lab_id}",
        json={"status": "amended", "resultIds": ["obs_c"], "patientId": "pt_other", "code": "x"},
    )
    read = api.get(f"/v1/labs/{lab_id}")
    deleted = api.delete(f"/v1/labs/{lab_id}")
    after = api.get(f"/v1/labs/{lab_id}")
    again = api.delete(f"/v1/labs/{lab_id}")

    assert patched.status_code == 200
    lab = read.json()["data"]
    assert lab["status"] == "amended"
    assert lab["resultIds"] == ["obs_c"]
    assert lab["patientId"] == FIXED_PATIENT_ID
    assert lab["code"]["code"] == "58410-2"
    assert lab["conclusion"] == "Mild normocytic anaemia."
    assert lab["createdAt"] == "2026-03-02T09:00:00.000Z"
    assert lab["updatedAt"] == "2026-03-02T09:00:05.000Z"
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert REQUEST_ID.match(deleted.headers["X-Request-Id"])
    assert after.status_code == 404
    assert again.status_code == 404
    assert [w.action for w in sandbox.store.writes] == ["create", "update", "delete"]


def test_patching_a_missing_lab_is_404(api: httpx.Client) -> None:
    response = api.patch("/v1/labs/lab_doesnotexist", json={"status": "final"})

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_unknown_keys_and_attachment_extras_are_stripped(api: httpx.Client) -> None:
    body = lab_body(
        presentedForm=[
            {
                "contentType": "application/pdf",
                "data": "JVBERi0xLjcK",
                "title": "CBC",
                "size": 9,
                "hash": "x",
            }
        ],
        favouriteColour="blue",
    )

    lab = api.post("/v1/labs", json=body).json()["data"]

    assert lab["presentedForm"] == [
        {"contentType": "application/pdf", "data": "JVBERi0xLjcK", "title": "CBC"}
    ]
    assert "favouriteColour" not in lab


def test_the_fixed_patients_report_includes_observations_on_request(api: httpx.Client) -> None:
    labs = api.get("/v1/labs", params={"patientId": FIXED_PATIENT_ID, "status": "final"}).json()
    lab = labs["data"]["data"][0]

    plain = api.get(f"/v1/labs/{lab['id']}").json()
    included = [
        api.get(f"/v1/labs/{lab['id']}", params=params).json()
        for params in (
            {"include": "Observation"},
            {"_include": "DiagnosticReport:Observation"},
            {"_include": "DiagnosticReport:result"},
        )
    ]

    assert "included" not in plain
    for body in included:
        assert [obs["id"] for obs in body["included"]] == lab["resultIds"]
        assert {obs["code"]["code"] for obs in body["included"]} >= {"718-7", "777-3", "6690-2"}
        assert list(body) == ["data", "included", "meta"]


def test_list_items_leave_out_attachment_data_but_reads_keep_it(api: httpx.Client) -> None:
    form = {"contentType": "application/pdf", "data": "JVBERi0xLjcK", "title": "CBC"}
    lab_id = api.post(
        "/v1/labs", json=lab_body(patientId="pt_attach", presentedForm=[form])
    ).json()["data"]["id"]

    listed = api.get("/v1/labs", params={"patientId": "pt_attach"}).json()["data"]["data"][0]
    read = api.get(f"/v1/labs/{lab_id}").json()["data"]

    assert listed["presentedForm"] == [{"contentType": "application/pdf", "title": "CBC"}]
    assert read["presentedForm"] == [form]


# --- validation (§7.1, §11.1) ------------------------------------------------------------------


def test_missing_required_fields_give_one_issue_each(api: httpx.Client) -> None:
    response = api.post("/v1/labs", json={})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["error"] == "Validation Error"
    assert diagnostics(response) == ["status: Required", "code: Required", "patientId: Required"]
    assert body["issues"][0] == {
        "severity": "error",
        "code": "invalid",
        "diagnostics": "status: Required",
    }


def test_validation_names_the_constraint_and_never_the_value(api: httpx.Client) -> None:
    secret = "CANARYVALUE"
    body = lab_body(
        status=f"{secret}-status",
        conclusion=secret * 500,
        patientId=123,
        effectiveDateTime="2026-03-02T07:40:00+01:00",
        presentedForm=[
            {"contentType": "application/pdf", "data": f"data:application/pdf;base64,{secret}"},
            {"data": "JVBERi0xLjcK"},
        ],
        conclusionCodes=[{"system": "http://snomed.info/sct"}],
        resultIds="obs_1",
    )

    response = api.post("/v1/labs", json=body)

    assert response.status_code == 422
    assert diagnostics(response) == [
        "status: Invalid enum value",
        "patientId: Expected string, received number",
        "effectiveDateTime: Invalid datetime",
        "conclusion: String must contain at most 5000 character(s)",
        "presentedForm.0.data: Invalid base64",
        "presentedForm.1.contentType: Required",
        "conclusionCodes.0.code: Required",
        "resultIds: Expected array, received string",
    ]
    assert secret not in response.text


def test_a_patch_body_must_be_an_object(api: httpx.Client) -> None:
    lab_id = api.post("/v1/labs", json=lab_body()).json()["data"]["id"]

    response = api.patch(
        f"/v1/labs/{lab_id}", json=[{"op": "replace", "path": "/status", "value": "final"}]
    )

    assert response.status_code == 422
    assert diagnostics(response) == ["body: Expected object, received array"]


def test_strict_mode_checks_references_patch_keys_and_transitions(clock: ManualClock) -> None:
    sandbox = Sandbox(SandboxConfig(strict=True, clock=clock.monotonic, now=clock.now))
    api = in_process(sandbox)
    lab_id = api.post("/v1/labs", json=lab_body()).json()["data"]["id"]

    unknown_patient = api.post(
        "/v1/labs", json=lab_body(patientId="pt_nobody", resultIds=["obs_nope"])
    )
    bad_category = api.post(
        "/v1/labs",
        json=lab_body(category="XRAY", presentedForm=[{"contentType": "application/pdf"}]),
    )
    fixed_keys = api.patch(f"/v1/labs/{lab_id}", json={"patientId": "pt_x", "colour": "blue"})
    backwards = api.patch(f"/v1/labs/{lab_id}", json={"status": "registered"})
    forwards = api.patch(f"/v1/labs/{lab_id}", json={"status": "amended"})

    assert diagnostics(unknown_patient) == [
        "patientId: Referenced resource not found",
        "resultIds.0: Referenced resource not found",
    ]
    assert diagnostics(bad_category) == [
        "category: Invalid enum value",
        "presentedForm.0: Either data or url is required",
    ]
    assert diagnostics(fixed_keys) == [
        "patientId: Field cannot be updated",
        "colour: Unrecognized key",
    ]
    assert diagnostics(backwards) == ["status: Invalid status transition"]
    assert forwards.status_code == 200


def test_seeding_routes_create_patients_and_observations(api: httpx.Client) -> None:
    patient = api.post(
        "/v1/patients", json={"firstName": "Test", "lastName": "Person", "birthDate": "1990-01-31"}
    )
    bad = api.post(
        "/v1/patients", json={"firstName": "x" * 101, "birthDate": "1990-02-30", "gender": "g"}
    )
    observation = api.post(
        "/v1/observations",
        json={
            "status": "final",
            "code": {
                "system": LOINC,
                "code": "718-7",
                "display": "Hemoglobin [Mass/volume] in Blood",
            },
            "patientId": patient.json()["data"]["id"],
            "valueQuantity": {"value": 11.2, "unit": "g/dL"},
        },
    )
    encounter = api.post(
        "/v1/encounters",
        json={"status": "finished", "class": "AMB", "patientId": "pt_x", "lengthMinutes": 10081},
    )

    assert patient.status_code == 201
    assert patient.json()["data"]["fullName"] == "Test Person"
    assert patient.json()["data"]["active"] is True
    assert re.match(r"^pt_[a-z0-9]{12}$", patient.json()["data"]["id"])
    assert diagnostics(bad) == [
        "firstName: String must contain at most 100 character(s)",
        "birthDate: Invalid date",
        "gender: Invalid enum value",
        "lastName: Required",
    ]
    assert observation.status_code == 201
    assert re.match(r"^obs_[a-z0-9]{12}$", observation.json()["data"]["id"])
    assert diagnostics(encounter) == ["lengthMinutes: Number must be less than or equal to 10080"]


# --- search and pagination (§5, §11.3, §12-§16) ------------------------------------------------


def test_pages_follow_offset_cursors_to_the_end(api: httpx.Client) -> None:
    for number in range(45):
        api.post("/v1/labs", json=lab_body(patientId="pt_paging", conclusion=f"report {number}"))

    pages = []
    cursor: str | None = None
    while True:
        params = {"patientId": "pt_paging", **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/labs", params=params).json()["data"]
        pages.append(page)
        cursor = page["cursor"]
        if not page["hasMore"]:
            break

    assert [len(p["data"]) for p in pages] == [20, 20, 5]
    assert [p["cursor"] for p in pages] == ["20", "40", None]
    assert [p["total"] for p in pages] == [45, 45, 45]
    conclusions = [lab["conclusion"] for p in pages for lab in p["data"]]
    assert conclusions == [f"report {n}" for n in reversed(range(45))]


@pytest.mark.parametrize(
    ("count", "cursor", "expected_len", "expected_cursor"),
    [
        ("500", None, 100, "100"),
        ("0", None, 20, "20"),
        ("-5", None, 20, "20"),
        ("abc", None, 20, "20"),
        ("10", "garbage", 10, "10"),
        ("10", "-3", 10, "10"),
        ("10", "510", 8, None),
        ("10", "9999", 0, None),
    ],
)
def test_count_is_clamped_and_bad_cursors_restart(
    api: httpx.Client,
    count: str,
    cursor: str | None,
    expected_len: int,
    expected_cursor: str | None,
) -> None:
    params = {"count": count, **({"cursor": cursor} if cursor else {})}

    page = api.get("/v1/observations", params=params).json()["data"]

    assert page["total"] == 518
    assert len(page["data"]) == expected_len
    assert page["cursor"] == expected_cursor
    assert page["hasMore"] is (expected_cursor is not None)


def test_lab_search_filters_by_status_category_and_date_and_sorts(api: httpx.Client) -> None:
    for when, category, status in [
        ("2026-01-05T10:00:00Z", "LAB", "final"),
        ("2026-02-10T23:59:00Z", "RAD", "final"),
        ("2026-03-01T00:00:00Z", "RAD", "preliminary"),
    ]:
        api.post(
            "/v1/labs",
            json=lab_body(
                patientId="pt_filters", effectiveDateTime=when, category=category, status=status
            ),
        )

    def dates(**params: str) -> list[str]:
        page = api.get("/v1/labs", params={"patientId": "pt_filters", **params}).json()["data"]
        return [lab["effectiveDateTime"][:10] for lab in page["data"]]

    assert dates(category="RAD", sort="date") == ["2026-02-10", "2026-03-01"]
    assert dates(status="final", sort="-date") == ["2026-02-10", "2026-01-05"]
    assert dates(dateFrom="2026-02-10", dateTo="2026-02-10") == ["2026-02-10"]
    assert dates(dateTo="2026-02-09") == ["2026-01-05"]


@pytest.mark.parametrize(
    ("params", "issue"),
    [
        ({"dateFrom": "yesterday"}, "dateFrom: Invalid date"),
        ({"status": "done"}, "status: Invalid enum value"),
    ],
)
def test_malformed_search_parameters_are_400(
    api: httpx.Client, params: dict[str, str], issue: str
) -> None:
    response = api.get("/v1/labs", params=params)

    assert response.status_code == 400
    assert diagnostics(response) == [issue]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("zoe", {"Zoë Lefèvre"}),
        ("LEFEVRE", {"Zoë Lefèvre"}),
        ("o'connor", {"Siobhán O'Connor"}),
        ("O’Connor", {"Siobhán O'Connor"}),
        ("d'ang", {"Marco D'Angelo"}),
        ("ostergaard", {"Søren Østergaard"}),
        ("yilmaz", {"Aylin Yılmaz"}),
        ("jose alvarez", {"José Álvarez"}),
        ("okafor", {"Amara N. Okafor", "Chinedu Okafor", "Ifeoma Okafor-Bello"}),
        ("nguyen", {"Linh Nguyen", "Bao Nguyen", "Mai Thi Nguyen"}),
        ("Amara Okafor", {"Amara N. Okafor"}),
    ],
)
def test_patient_name_search_is_partial_case_and_accent_insensitive(
    api: httpx.Client, query: str, names: set[str]
) -> None:
    page = api.get("/v1/patients", params={"name": query}).json()["data"]

    assert {p["fullName"] for p in page["data"]} == names


def test_patients_are_found_by_exact_birth_date_and_gender(api: httpx.Client) -> None:
    by_birth = api.get("/v1/patients", params={"birthDate": "1984-11-09"}).json()["data"]["data"]
    others = api.get("/v1/patients", params={"gender": "other"}).json()["data"]["data"]

    assert [(p["id"], p["fullName"]) for p in by_birth] == [(FIXED_PATIENT_ID, "Amara N. Okafor")]
    assert [p["fullName"] for p in others] == ["Sam Taylor"]


def test_inactive_practitioners_appear_only_when_asked_for(api: httpx.Client) -> None:
    default = api.get("/v1/practitioners").json()["data"]
    inactive = api.get("/v1/practitioners", params={"active": "false"}).json()["data"]

    assert default["total"] == 9
    assert all(p["active"] for p in default["data"])
    assert [p["lastName"] for p in inactive["data"]] == ["Ellison"]


def test_observations_and_encounters_filter_by_patient_category_and_date(api: httpx.Client) -> None:
    observations = api.get(
        "/v1/observations",
        params={"patientId": FIXED_PATIENT_ID, "category": "laboratory", "count": "100"},
    ).json()["data"]
    encounters = api.get(
        "/v1/encounters", params={"patientId": FIXED_PATIENT_ID, "sort": "-date"}
    ).json()["data"]
    later = api.get(
        "/v1/encounters",
        params={
            "patientId": FIXED_PATIENT_ID,
            "dateFrom": encounters["data"][0]["period"]["start"][:10],
        },
    ).json()["data"]

    assert observations["total"] == 18
    assert {o["patientId"] for o in observations["data"]} == {FIXED_PATIENT_ID}
    starts = [e["period"]["start"] for e in encounters["data"]]
    assert starts == sorted(starts, reverse=True)
    assert [e["id"] for e in later["data"]] == [encounters["data"][0]["id"]]


def test_environments_and_tenants_do_not_see_each_others_labs(clock: ManualClock) -> None:
    keys = {
        TEST_KEY: KeyInfo(tenant="org_a"),
        LIVE_KEY: KeyInfo(tenant="org_a"),
        "clk_test_otherorg": KeyInfo(tenant="org_b"),
    }
    sandbox = Sandbox(SandboxConfig(accepted_keys=keys, clock=clock.monotonic, now=clock.now))
    lab_id = in_process(sandbox).post("/v1/labs", json=lab_body()).json()["data"]["id"]

    own = in_process(sandbox).get(f"/v1/labs/{lab_id}")
    live = in_process(sandbox, key=LIVE_KEY).get(f"/v1/labs/{lab_id}")
    other = in_process(sandbox, key="clk_test_otherorg").get(f"/v1/labs/{lab_id}")

    assert own.status_code == 200
    assert (live.status_code, other.status_code) == (404, 404)
    assert [lab["id"] for lab in sandbox.store.labs(env="test", tenant="org_a")][-1] == lab_id
    assert lab_id not in {lab["id"] for lab in sandbox.store.labs(env="live", tenant="org_a")}


def test_dirty_search_results_add_a_phantom_row_and_a_strangers_row(sandbox: Sandbox) -> None:
    sandbox.configure(dirty_search_results=True)

    page = (
        in_process(sandbox).get("/v1/observations", params={"patientId": FIXED_PATIENT_ID}).json()
    )

    rows = page["data"]["data"]
    assert rows[-1]["id"] == ""
    assert rows[0]["patientId"] != FIXED_PATIENT_ID
    assert {r["patientId"] for r in rows[1:-1]} == {FIXED_PATIENT_ID}
    assert page["data"]["total"] == 18


# --- eventual consistency (§6) -----------------------------------------------------------------


def test_search_lags_writes_while_reads_by_id_do_not(sandbox: Sandbox, clock: ManualClock) -> None:
    sandbox.configure(search_lag_seconds=10)
    api = in_process(sandbox)

    def searched() -> list[dict[str, Any]]:
        page: list[dict[str, Any]] = api.get("/v1/labs", params={"patientId": "pt_lag"}).json()[
            "data"
        ]["data"]
        return page

    lab_id = api.post("/v1/labs", json=lab_body(patientId="pt_lag")).json()["data"]["id"]
    assert api.get(f"/v1/labs/{lab_id}").status_code == 200
    assert searched() == []
    clock.advance(9.9)
    assert searched() == []
    clock.advance(0.1)
    assert [lab["status"] for lab in searched()] == ["final"]

    api.patch(f"/v1/labs/{lab_id}", json={"status": "amended"})
    assert [lab["status"] for lab in searched()] == ["final"]
    clock.advance(10)
    assert [lab["status"] for lab in searched()] == ["amended"]

    api.delete(f"/v1/labs/{lab_id}")
    assert api.get(f"/v1/labs/{lab_id}").status_code == 404
    assert [lab["id"] for lab in searched()] == [lab_id]
    clock.advance(10)
    assert searched() == []


# --- rate limits and quotas (§8) -----------------------------------------------------------------


def test_the_rolling_minute_limit_answers_429_with_retry_after(
    sandbox: Sandbox, clock: ManualClock
) -> None:
    sandbox.configure(rate_limit_per_minute=3)
    api = in_process(sandbox)

    remaining = []
    for _ in range(3):
        remaining.append(api.get("/v1/patients").headers["X-RateLimit-Remaining"])
        clock.advance(10)
    limited = api.get("/v1/patients")
    clock.advance(30)
    allowed_again = api.get("/v1/patients")

    assert remaining == ["2", "1", "0"]
    assert limited.status_code == 429
    assert limited.json()["code"] == "RATE_LIMITED"
    assert limited.json()["error"] == "Too Many Requests"
    assert limited.headers["Retry-After"] == "30"
    assert limited.headers["X-RateLimit-Reset"] == "30"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert allowed_again.status_code == 200
    assert allowed_again.headers["X-RateLimit-Remaining"] == "0"


def test_enforced_quotas_answer_the_two_quota_codes(clock: ManualClock) -> None:
    sandbox = Sandbox(
        SandboxConfig(
            enforce_quotas=True,
            monthly_quota=2,
            sandbox_quota=1,
            clock=clock.monotonic,
            now=clock.now,
        )
    )

    test_first = in_process(sandbox).get("/v1/patients")
    test_second = in_process(sandbox).get("/v1/patients")
    live_first = in_process(sandbox, key=LIVE_KEY).get("/v1/patients")
    live_second = in_process(sandbox, key=LIVE_KEY).get("/v1/patients")

    assert test_first.status_code == 200
    assert test_second.status_code == 429
    assert test_second.json()["code"] == "SANDBOX_QUOTA_EXCEEDED"
    assert test_second.json()["error"] == "Quota exceeded"
    assert live_first.status_code == 429
    assert live_first.json()["code"] == "MONTHLY_QUOTA_EXCEEDED"
    assert live_first.headers["X-Quota-Overage"] == "1"
    assert live_second.headers["X-Quota-Overage"] == "2"


# --- faults, in-process --------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["7", "soon", "-5", "99999999"])
def test_a_forced_rate_limit_carries_any_retry_after_value_once(
    api: httpx.Client, sandbox: Sandbox, retry_after: str
) -> None:
    sandbox.faults.push(Fault.rate_limited(retry_after, route="POST /v1/labs"))

    limited = api.post("/v1/labs", json=lab_body())
    then = api.post("/v1/labs", json=lab_body())

    assert limited.status_code == 429
    assert limited.json()["code"] == "RATE_LIMITED"
    assert limited.headers["Retry-After"] == retry_after
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert then.status_code == 201
    assert len(sandbox.store.created("labs")) == 1


def test_a_forced_rate_limit_can_omit_or_replace_its_headers(
    api: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.faults.push(
        Fault.rate_limited(None, headers={"X-RateLimit-Reset": "12"}),
        Fault.rate_limited(None, omit_headers=["X-RateLimit-Reset"]),
    )

    only_reset = api.get("/v1/labs")
    neither = api.get("/v1/labs")

    assert "Retry-After" not in only_reset.headers
    assert only_reset.headers["X-RateLimit-Reset"] == "12"
    assert "Retry-After" not in neither.headers
    assert "X-RateLimit-Reset" not in neither.headers


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.monthly_quota(), "MONTHLY_QUOTA_EXCEEDED"),
        (Fault.sandbox_quota(), "SANDBOX_QUOTA_EXCEEDED"),
    ],
)
def test_quota_faults_answer_429_quota_exceeded(
    api: httpx.Client, sandbox: Sandbox, fault: Fault, code: str
) -> None:
    sandbox.faults.push(fault)

    response = api.get("/v1/labs")

    assert response.status_code == 429
    assert (response.json()["code"], response.json()["error"]) == (code, "Quota exceeded")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize(("when", "stored"), [("before", 0), ("after", 1)])
def test_server_errors_fire_before_or_after_storing(
    api: httpx.Client, sandbox: Sandbox, status: int, when: Any, stored: int
) -> None:
    sandbox.faults.push(
        Fault.server_error(status, route="POST /v1/labs", when=when, retry_after=20)
    )

    response = api.post("/v1/labs", json=lab_body())

    assert response.status_code == status
    assert response.json()["code"] == "INTERNAL_ERROR"
    assert response.headers["Retry-After"] == "20"
    assert len(sandbox.store.labs()) - 12 == stored


def test_faults_fire_n_times_after_skipping_and_only_on_their_route(
    api: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.faults.push(Fault.server_error(503, route="GET /v1/labs/*", times=2, skip=1))
    lab_id = api.post("/v1/labs", json=lab_body()).json()["data"]["id"]

    statuses = [api.get(f"/v1/labs/{lab_id}").status_code for _ in range(4)]
    listing = api.get("/v1/labs")

    assert statuses == [200, 503, 503, 200]
    assert listing.status_code == 200
    assert sandbox.faults.pending() == []


def test_an_always_fault_keeps_firing(api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.set(Fault.error(409, route="PATCH /v1/labs/*", times=None))
    lab_id = api.post("/v1/labs", json=lab_body()).json()["data"]["id"]

    responses = [api.patch(f"/v1/labs/{lab_id}", json={"status": "amended"}) for _ in range(3)]

    assert [(r.status_code, r.json()["code"]) for r in responses] == [(409, "CONFLICT")] * 3
    assert len(sandbox.faults.pending()) == 1


@pytest.mark.parametrize(("when", "stored"), [("before", False), ("after", True)])
def test_in_process_drops_raise_a_dedicated_exception(
    api: httpx.Client, sandbox: Sandbox, when: Any, stored: bool
) -> None:
    sandbox.faults.push(Fault.drop(route="POST /v1/labs", when=when))

    with pytest.raises(SandboxConnectionDropped) as dropped:
        api.post("/v1/labs", json=lab_body())

    assert dropped.value.mode == "close"
    assert dropped.value.stored is stored
    assert len(sandbox.store.created("labs")) == int(stored)
    assert sandbox.store.requests[-1].status is None
    assert sandbox.store.requests[-1].fault == "drop"


def test_latency_delays_matching_requests(api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.push(Fault.latency(150, route="GET /health", times=1))

    started = time.monotonic()
    api.get("/health")
    delayed = time.monotonic() - started
    started = time.monotonic()
    api.get("/health")
    undelayed = time.monotonic() - started

    assert delayed >= 0.15
    assert undelayed < 0.15


def test_a_redirect_fault_points_elsewhere(api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.push(Fault.redirect("https://elsewhere.example/v1/labs"))

    response = api.post("/v1/labs", json=lab_body())

    assert response.status_code == 302
    assert response.headers["Location"] == "https://elsewhere.example/v1/labs"
    assert sandbox.store.created("labs") == []


# --- control routes ------------------------------------------------------------------------------


def test_control_routes_arm_faults_change_config_and_reset(sandbox: Sandbox) -> None:
    control = in_process(sandbox, key=None)
    api = in_process(sandbox)
    api.post("/v1/labs", json=lab_body())

    armed = control.post(
        "/_sandbox/faults",
        json={"kind": "error", "route": "GET /v1/labs", "status": 503, "retry_after": "soon"},
    )
    state = control.get("/_sandbox/state").json()
    faulted = api.get("/v1/labs")
    configured = control.post(
        "/_sandbox/config", json={"search_lag_seconds": 10, "rate_limit_per_minute": 7}
    )
    after_config = api.get("/v1/labs")
    truth = control.get("/_sandbox/resources/labs").json()["resources"]
    log = control.get("/_sandbox/requests", params={"method": "POST"}).json()["requests"]
    reset = control.post("/_sandbox/reset")

    assert armed.status_code == 200
    assert state["faults"][0]["status"] == 503
    assert [(d["environment"], d["counts"]["labs"]) for d in state["datasets"]] == [("test", 13)]
    assert faulted.status_code == 503
    assert faulted.headers["Retry-After"] == "soon"
    assert configured.json()["config"]["search_lag_seconds"] == 10
    assert after_config.headers["X-RateLimit-Limit"] == "7"
    assert len(truth) == 13
    assert [entry["status"] for entry in log] == [201]
    assert reset.json()["requests"] == 0
    assert len(sandbox.store.labs()) == 12


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "explode"},
        {"kind": "error", "status": "500"},
        {"kind": "hang", "colour": "red"},
        [{"kind": "redirect"}],
    ],
)
def test_malformed_fault_specs_are_refused(sandbox: Sandbox, spec: Any) -> None:
    response = in_process(sandbox, key=None).post("/_sandbox/faults", json=spec)

    assert response.status_code == 400
    assert sandbox.faults.pending() == []


def test_the_request_log_never_holds_the_key(api: httpx.Client, sandbox: Sandbox) -> None:
    api.post("/v1/labs", json=lab_body())
    api.get("/v1/labs")

    dumped = json.dumps([record.to_dict() for record in sandbox.store.requests])

    assert TEST_KEY not in dumped
    assert [(r.method, r.status) for r in sandbox.store.requests] == [("POST", 201), ("GET", 200)]
    assert sandbox.store.requests[0].body["conclusion"] == "Mild normocytic anaemia."
    assert ("content-type", "application/json") in sandbox.store.requests[0].headers


def test_default_sandbox_is_one_shared_instance() -> None:
    assert default_sandbox() is default_sandbox()


# --- over a real socket ---------------------------------------------------------------------------


def test_labs_round_trip_over_a_real_socket(socket_api: httpx.Client) -> None:
    created = socket_api.post("/v1/labs", json=lab_body(patientId="pt_socket"))
    lab_id = created.json()["data"]["id"]

    searched = socket_api.get("/v1/labs", params={"patientId": "pt_socket"})
    patched = socket_api.patch(f"/v1/labs/{lab_id}", json={"conclusion": "Revised."})
    deleted = socket_api.delete(f"/v1/labs/{lab_id}")
    missing = socket_api.get(f"/v1/labs/{lab_id}")

    assert created.status_code == 201
    assert [lab["id"] for lab in searched.json()["data"]["data"]] == [lab_id]
    assert patched.json()["data"]["conclusion"] == "Revised."
    assert deleted.status_code == 204
    assert missing.status_code == 404
    assert missing.headers["X-Request-Id"] == missing.json()["requestId"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.drop(route="POST /v1/labs"), httpx.RemoteProtocolError),
        (Fault.connection_reset(route="POST /v1/labs"), httpx.ReadError),
        (Fault.garbage(route="POST /v1/labs"), httpx.RemoteProtocolError),
    ],
)
def test_connection_faults_after_storing_leave_the_lab_stored(
    socket_api: httpx.Client, sandbox: Sandbox, fault: Fault, error: type[Exception]
) -> None:
    sandbox.faults.push(fault)

    with pytest.raises(error):
        socket_api.post("/v1/labs", json=lab_body())

    assert len(sandbox.store.created("labs")) == 1
    assert socket_api.get("/health").status_code == 200


def test_a_drop_before_storing_stores_nothing(socket_api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.push(Fault.drop(route="POST /v1/labs", when="before"))

    with pytest.raises(httpx.RemoteProtocolError):
        socket_api.post("/v1/labs", json=lab_body())

    assert sandbox.store.created("labs") == []


def test_a_hang_after_storing_times_out_the_client_with_the_lab_stored(
    socket_api: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.faults.push(Fault.hang(1.0, route="POST /v1/labs", when="after"))

    with pytest.raises(httpx.ReadTimeout):
        socket_api.post("/v1/labs", json=lab_body())

    assert len(sandbox.store.created("labs")) == 1


def test_a_hang_before_storing_times_out_and_stores_nothing(
    socket_api: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.faults.push(Fault.hang(1.0, route="POST /v1/labs", when="before"))

    with pytest.raises(httpx.ReadTimeout):
        socket_api.post("/v1/labs", json=lab_body())
    finished = sandbox.wait_idle(timeout=3)

    assert finished
    assert sandbox.store.created("labs") == []
    assert (sandbox.store.requests[-1].fault, sandbox.store.requests[-1].status) == ("hang", None)


def test_stopping_the_server_cuts_a_hang_short(sandbox: Sandbox) -> None:
    running = serve_in_thread(sandbox)
    sandbox.faults.push(Fault.hang(30, route="GET /v1/labs"))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.get(f"{running.url}/v1/labs", headers={"x-api-key": TEST_KEY}, timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 3
    while not sandbox.faults.fired and time.monotonic() < deadline:
        time.sleep(0.01)  # wait until the request has reached the hang
    started = time.monotonic()
    running.stop()
    caller.join(5)

    assert time.monotonic() - started < 2
    assert not caller.is_alive()
    assert len(errors) == 1


def test_a_slow_drip_beats_a_per_read_timeout(socket_api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.push(Fault.drip(0.004, route="GET /health"))

    started = time.monotonic()
    response = socket_api.get("/health")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert elapsed >= 0.004 * len(response.content) * 0.8


def test_faults_armed_over_http_act_on_the_socket(
    running: RunningSandbox, sandbox: Sandbox
) -> None:
    with httpx.Client(base_url=running.url, timeout=2) as control:
        control.post(
            "/_sandbox/faults", json={"kind": "drop", "route": "POST /v1/labs", "when": "after"}
        )

        with pytest.raises(httpx.RemoteProtocolError):
            control.post("/v1/labs", json=lab_body(), headers={"x-api-key": TEST_KEY})
        writes = control.get("/_sandbox/writes").json()["writes"]

    assert [(w["action"], w["kind"]) for w in writes] == [("create", "labs")]


def test_the_server_writes_nothing_to_stderr(
    socket_api: httpx.Client, sandbox: Sandbox, capfd: Any
) -> None:
    sandbox.faults.push(Fault.drop(route="GET /v1/labs"))

    socket_api.get("/health")
    with pytest.raises(httpx.RemoteProtocolError):
        socket_api.get("/v1/labs")
    socket_api.get("/v1/nowhere")

    captured = capfd.readouterr()
    assert captured.err == ""
    assert TEST_KEY not in captured.out
