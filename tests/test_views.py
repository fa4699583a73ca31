"""Patient look-up pages: page → service → client → the in-process sandbox API."""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from reports import clinikapi
from reports.sandbox import KeyInfo, Sandbox, SandboxConfig, default_sandbox
from reports.sandbox.seed import FIXED_PATIENT_ID
from reports.sandbox.server import serve_in_thread

pytestmark = pytest.mark.django_db

SEARCH_URL = reverse("reports:patient_search")


def test_patient_search_by_name_finds_seeded_patients(clinician_client):
    response = clinician_client.post(SEARCH_URL, {"name": "okafor"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Amara" in page and "Okafor" in page
    assert 'id="patient-table"' in page


def test_patient_search_ignores_accents_and_case(clinician_client):
    plain = clinician_client.post(SEARCH_URL, {"name": "ZOE"}).content.decode()
    accented = clinician_client.post(SEARCH_URL, {"name": "zoë"}).content.decode()

    assert "Zoë" in plain
    assert "Zoë" in accented


def test_patient_search_by_birth_date_alone_finds_the_patient(clinician_client):
    response = clinician_client.post(SEARCH_URL, {"birth_date": "1984-11-09"})

    assert "Okafor" in response.content.decode()


def test_patient_search_keeps_names_out_of_the_url(clinician_client):
    response = clinician_client.get(SEARCH_URL, {"name": "okafor"})

    assert response.status_code == 200
    assert 'id="patient-table"' not in response.content.decode()


def test_patient_search_answers_htmx_with_the_results_fragment_only(clinician_client):
    response = clinician_client.post(SEARCH_URL, {"name": "okafor"}, headers={"HX-Request": "true"})

    page = response.content.decode()
    assert page.lstrip().startswith('<div id="patient-results"')
    assert "<html" not in page


def test_patient_search_without_criteria_says_what_to_enter(clinician_client):
    response = clinician_client.post(SEARCH_URL, {"name": "", "birth_date": ""})

    assert "Enter a name, a birth date or both." in response.content.decode()


def test_patient_search_with_an_impossible_date_flags_the_birth_date_field(clinician_client):
    response = clinician_client.post(SEARCH_URL, {"birth_date": "1984-02-31"})

    assert response.status_code == 200
    assert response.context["form"].errors["birth_date"] == ["Enter a valid date."]


def test_patient_search_with_no_match_says_so(clinician_client):
    response = clinician_client.post(SEARCH_URL, {"name": "zzzqqq"})

    assert "No patient matches this search." in response.content.decode()


def test_patient_page_shows_banner_encounters_and_observations(clinician_client):
    patient = clinikapi.get_client().get_patient(FIXED_PATIENT_ID)

    response = clinician_client.get(reverse("reports:patient_detail", args=[patient.id]))

    page = response.content.decode()
    assert response.status_code == 200
    assert patient.full_name in page and patient.id in page
    assert 'id="encounter-table"' in page
    assert 'id="observation-table"' in page
    assert response.context["chart"].observations
    assert "no-store" in response["Cache-Control"]


def test_patient_page_shows_each_result_with_value_unit_range_and_flag(clinician_client):
    patient = clinikapi.get_client().get_patient(FIXED_PATIENT_ID)
    api = clinikapi.get_client()
    observations = list(clinikapi.iter_all(api.search_observations, patient_id=patient.id))
    flagged = next(o for o in observations if o.is_abnormal and o.value_quantity)
    assert flagged.value_quantity is not None

    page = clinician_client.get(reverse("reports:patient_detail", args=[patient.id]))

    html = page.content.decode()
    assert f"<td>{flagged.value_display}</td>" in html
    assert flagged.value_quantity.unit
    assert flagged.value_quantity.unit in flagged.value_display
    assert f"<td>{flagged.reference_range_text}</td>" in html
    assert f'<span class="badge text-bg-warning">{flagged.interpretation}</span>' in html


def test_critical_results_stand_out(clinician_client):
    critical = _any_critical_observation()

    page = clinician_client.get(reverse("reports:patient_detail", args=[critical.patient_id]))

    html = page.content.decode()
    chart = page.context["chart"]
    assert f"{critical.interpretation} critical</span>" in html
    assert 'class="table-danger result-critical"' in html
    assert chart.critical_count >= 1
    assert f'<span class="badge text-bg-danger">{chart.critical_count} critical</span>' in html


def test_patient_page_lists_encounters_and_observations_newest_first(clinician_client):
    patient = clinikapi.get_client().get_patient(FIXED_PATIENT_ID)

    chart = clinician_client.get(reverse("reports:patient_detail", args=[patient.id])).context[
        "chart"
    ]

    starts = [e.start_time for e in chart.encounters if e.start_time]
    times = [o.effective_time for o in chart.observations if o.effective_time]
    assert starts == sorted(starts, reverse=True)
    assert times == sorted(times, reverse=True)


def test_unknown_patient_id_says_patient_not_found(clinician_client):
    response = clinician_client.get(reverse("reports:patient_detail", args=["pt_doesnotexist0"]))

    assert response.status_code == 404
    assert "Patient not found" in response.content.decode()


def test_malformed_patient_id_is_a_plain_404(clinician_client):
    response = clinician_client.get("/patients/..%2Fetc/")

    assert response.status_code == 404


def test_api_down_shows_a_clear_message_and_the_rest_keeps_working(clinician_client, settings):
    settings.CLINIKAPI_BASE_URL = f"http://127.0.0.1:{_closed_port()}"
    settings.CLINIKAPI_CONNECT_TIMEOUT = 0.5
    clinikapi.reset_client()

    search = clinician_client.post(SEARCH_URL, {"name": "okafor"})
    detail = clinician_client.get(reverse("reports:patient_detail", args=["pt_abc123"]))
    home = clinician_client.get(SEARCH_URL)

    assert "ClinikAPI cannot be reached right now" in search.content.decode()
    assert detail.status_code == 503
    assert "ClinikAPI cannot be reached right now" in detail.content.decode()
    assert home.status_code == 200


def test_a_malformed_key_says_clinikapi_is_misconfigured(clinician_client, settings):
    settings.CLINIKAPI_SECRET_KEY = "not-a-clinikapi-key"
    clinikapi.reset_client()

    response = clinician_client.post(SEARCH_URL, {"name": "okafor"})

    assert "ClinikAPI is not configured correctly on this server" in response.content.decode()


@pytest.mark.parametrize("key", ["clk_test_revokedkey", "clk_test_unknownkey"])
def test_a_revoked_or_unknown_key_says_the_credentials_were_refused(
    clinician_client, settings, key
):
    accepted = {"clk_test_revokedkey": KeyInfo(tenant="org_a", revoked=True)}
    running = serve_in_thread(Sandbox(SandboxConfig(accepted_keys=accepted)))
    settings.CLINIKAPI_BASE_URL = running.url
    settings.CLINIKAPI_SECRET_KEY = key
    clinikapi.reset_client()
    try:
        response = clinician_client.post(SEARCH_URL, {"name": "okafor"})
    finally:
        running.stop()

    page = response.content.decode()
    assert "ClinikAPI refused ClinikUI&#x27;s credentials" in page
    assert "(reference req_" in page


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get(SEARCH_URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_users_without_a_role_cannot_look_up_patients(client, django_user_model):
    user = django_user_model.objects.create_user("norole", password="x")
    client.force_login(user)

    response = client.post(SEARCH_URL, {"name": "okafor"})

    assert response.status_code == 403


def test_supervisors_can_look_up_patients(client, supervisor):
    client.force_login(supervisor)

    response = client.post(SEARCH_URL, {"name": "okafor"})

    assert response.status_code == 200
    assert "Okafor" in response.content.decode()


def test_ping_answers_without_a_session(client):
    response = client.get(reverse("ping"))

    assert response.content == b"pong"


def _any_critical_observation() -> clinikapi.Observation:
    api = clinikapi.get_client()
    for patient in clinikapi.iter_all(api.search_patients):
        for observation in clinikapi.iter_all(api.search_observations, patient_id=patient.id):
            if observation.is_critical:
                return observation
    raise AssertionError("the seed has no critical result")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_in_process_sandbox_takes_its_search_lag_from_settings(settings):
    settings.CLINIKAPI_SANDBOX_SEARCH_LAG = 12.5
    clinikapi.reset_client()

    clinikapi.get_client()

    assert default_sandbox().config.search_lag_seconds == 12.5
