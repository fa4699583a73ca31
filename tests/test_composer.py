"""The composer pages: start, edit, autosave, conflicts, history, preview and payload.json."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import socket

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from reports import clinikapi, services
from reports.models import Report, VersionKind
from reports.payload import ReportContent
from reports.pdf_validation import MAX_ATTACHMENT_BYTES, human_size
from reports.sandbox.seed import FIXED_PATIENT_ID
from terminology import loading
from tests.conftest import make_user
from tests.pdfs import samples

pytestmark = pytest.mark.django_db

LABELS = (
    "Patient",
    "Encounter",
    "Report code",
    "Category",
    "Status",
    "Effective date/time",
    "Results",
    "Specimens",
    "Performer",
    "Results interpreter",
    "Conclusion",
    "Conclusion codes",
)


@pytest.fixture
def report(clinician) -> Report:
    return services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)


@pytest.fixture
def starter_terminology() -> None:
    loading.load_starter_set()


def edit_url(report: Report) -> str:
    return reverse("reports:edit", args=[report.pk])


def patient_observations(patient_id: str = FIXED_PATIENT_ID) -> list[clinikapi.Observation]:
    api = clinikapi.get_client()
    return list(clinikapi.iter_all(api.search_observations, patient_id=patient_id))


def form_data(base_version: int, **fields: object) -> dict[str, object]:
    return {"base_version": base_version, **fields}


def test_starting_a_report_from_the_patient_search_opens_the_composer(clinician_client):
    response = clinician_client.post(reverse("reports:new"), {"patient_id": FIXED_PATIENT_ID})

    report = Report.objects.get()
    assert response.status_code == 302 and response["Location"] == edit_url(report)
    assert report.patient_name == "Amara N. Okafor"


def test_the_new_report_page_searches_patients_and_offers_to_start(clinician_client):
    response = clinician_client.post(reverse("reports:new"), {"name": "okafor"})

    page = response.content.decode()
    assert "New report: choose the patient" in page
    assert f'name="patient_id" value="{FIXED_PATIENT_ID}"' in page


def test_every_field_has_a_visible_label_with_its_plain_name(clinician_client, report):
    page = clinician_client.get(edit_url(report)).content.decode()

    for label in LABELS[1:]:
        assert re.search(rf"<(label|legend)[^>]*>\s*{re.escape(label)}\s*<", page), label
    assert 'aria-label="Patient"' in page and "Amara N. Okafor" in page


def test_saving_creates_a_new_version_and_redirects(clinician_client, report, starter_terminology):
    observation = patient_observations()[0]

    response = clinician_client.post(
        edit_url(report),
        form_data(
            1,
            report_code="58410-2",
            status="preliminary",
            effective="2026-03-02T07:40",
            results=[observation.id],
            conclusion="Mild normocytic anaemia.",
            conclusion_codes=["271737000"],
        ),
    )

    report.refresh_from_db()
    content = ReportContent.from_json(report.versions.get(number=report.head).content)
    assert response.status_code == 302
    assert report.head == 2
    assert content.code is not None and content.code.display == (
        "CBC panel - Blood by Automated count"
    )
    assert content.category == "LAB"  # suggested from the code's LOINC class
    assert content.result_ids == (observation.id,)
    assert [c.display for c in content.conclusion_codes] == ["Anemia"]
    assert content.effective is not None and content.effective.isoformat() == (
        "2026-03-02T07:40:00+00:00"
    )


def test_autosave_refreshes_the_results_when_the_encounter_changes(clinician_client, report):
    encounter_id = patient_observations()[0].encounter_id

    response = clinician_client.post(
        edit_url(report),
        form_data(1, encounter=encounter_id, autosave="1"),
        headers={"HX-Request": "true"},
    )

    page = response.content.decode()
    assert '<div id="results-picker" hx-swap-oob="true">' in page
    others = [o for o in patient_observations() if o.encounter_id != encounter_id]
    assert others and page.index(others[0].id) > page.index('id="other-results-table"')


def test_autosave_shows_the_category_suggested_from_the_report_code(
    clinician_client, report, starter_terminology
):
    response = clinician_client.post(
        edit_url(report),
        form_data(1, report_code="58410-2", autosave="1"),
        headers={"HX-Request": "true"},
    )

    page = response.content.decode()
    assert re.search(r'<select name="category"[^>]*hx-swap-oob="true"', page)
    assert '<option value="LAB" selected>' in page


def test_autosave_answers_with_the_new_version_and_preview(clinician_client, report):
    response = clinician_client.post(
        edit_url(report),
        form_data(1, conclusion="Typed so far", autosave="1"),
        headers={"HX-Request": "true"},
    )

    page = response.content.decode()
    report.refresh_from_db()
    assert response.status_code == 200
    assert report.versions.get(number=2).kind == VersionKind.AUTOSAVED
    assert 'id="id_base_version" hx-swap-oob="true"' in page and 'value="2"' in page
    assert "Typed so far" in page  # the preview shows the saved body


def test_a_stale_save_shows_both_texts_and_loses_neither(clinician_client, report):
    clinician_client.post(edit_url(report), form_data(1, conclusion="From the first tab."))

    response = clinician_client.post(
        edit_url(report), form_data(1, conclusion="From the second tab."), follow=True
    )

    page = response.content.decode()
    assert response.redirect_chain == [(reverse("reports:conflict", args=[report.pk, 3]), 302)]
    assert "From the first tab." in page and "From the second tab." in page
    assert report.versions.filter(kind=VersionKind.CONFLICT).get().content["conclusion"] == (
        "From the second tab."
    )


def test_a_stale_autosave_keeps_the_text_and_stops_without_leaving_the_page(
    clinician_client, report
):
    clinician_client.post(edit_url(report), form_data(1, conclusion="Saved elsewhere."))

    response = clinician_client.post(
        edit_url(report),
        form_data(1, conclusion="Typed here.", autosave="1"),
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 409
    assert "draft-conflict" in json.loads(response["HX-Trigger"])
    assert reverse("reports:conflict", args=[report.pk, 3]) in response.content.decode()
    assert report.versions.get(number=3).content["conclusion"] == "Typed here."


def test_an_expired_session_gets_401_for_htmx_and_the_login_page_otherwise(client, report):
    htmx = client.post(edit_url(report), form_data(1, autosave="1"), headers={"HX-Request": "true"})
    plain = client.get(edit_url(report))

    assert htmx.status_code == 401 and "session-expired" in json.loads(htmx["HX-Trigger"])
    assert plain.status_code == 302 and plain["Location"].startswith(reverse("login"))


def test_results_of_another_patient_are_refused_whatever_the_browser_sends(
    clinician_client, report
):
    other = next(o for o in patient_observations("pt_1kebkmsip70g"))

    response = clinician_client.post(edit_url(report), form_data(1, results=[other.id]))

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert report.versions.count() == 1


def test_an_unknown_report_code_is_flagged_at_its_field(clinician_client, report):
    response = clinician_client.post(edit_url(report), form_data(1, report_code="99999-9"))

    assert "99999-9 is not a LOINC code ClinikUI knows." in response.content.decode()
    assert report.versions.count() == 1


def test_the_preview_lists_what_blocks_sending_and_links_each_field(clinician_client, report):
    page = clinician_client.get(edit_url(report)).content.decode()

    assert 'href="#report-code-field">Report code</a>' in page
    assert 'href="#div_id_status">Status</a>' in page


def test_payload_json_is_the_exact_body_for_the_current_version(
    clinician_client, report, starter_terminology
):
    clinician_client.post(
        edit_url(report), form_data(1, report_code="58410-2", status="registered")
    )

    body = clinician_client.get(reverse("reports:payload", args=[report.pk])).json()

    assert body == {
        "status": "registered",
        "code": {
            "system": "http://loinc.org",
            "code": "58410-2",
            "display": "CBC panel - Blood by Automated count",
        },
        "patientId": FIXED_PATIENT_ID,
        "category": "LAB",
    }


def test_history_lists_versions_and_diffs_two_of_them(clinician_client, report):
    clinician_client.post(edit_url(report), form_data(1, conclusion="Iron low."))
    clinician_client.post(edit_url(report), form_data(2, conclusion="Ferritin low."))

    page = clinician_client.get(
        reverse("reports:history", args=[report.pk]), {"a": 2, "b": 3}
    ).content.decode()

    assert page.count("<tr") >= 4  # three versions listed
    assert "<del>Iron</del>" in page and "<ins>Ferritin</ins>" in page


def test_an_old_version_is_restored_as_a_new_one(clinician_client, report):
    clinician_client.post(edit_url(report), form_data(1, conclusion="First."))
    clinician_client.post(edit_url(report), form_data(2, conclusion="Second."))

    clinician_client.post(
        reverse("reports:restore", args=[report.pk]), {"number": 2, "base_version": 3}
    )

    report.refresh_from_db()
    assert report.head == 4
    assert report.versions.get(number=4).content["conclusion"] == "First."


def test_the_history_restores_through_one_form_and_refuses_a_missing_version(
    clinician_client, report
):
    clinician_client.post(edit_url(report), form_data(1, conclusion="First."))
    clinician_client.post(edit_url(report), form_data(2, conclusion="Second."))
    page = clinician_client.get(reverse("reports:history", args=[report.pk])).content.decode()
    assert page.count('id="restore-form"') == 1
    assert page.count("csrfmiddlewaretoken") == 2  # the restore form's and the sign-out form's
    assert re.findall(r'form="restore-form" name="number" value="(\d+)"', page) == ["2", "1"]

    url = reverse("reports:restore", args=[report.pk])
    for number in ("", "x", "9"):
        response = clinician_client.post(url, {"number": number, "base_version": 3})
        assert response.status_code == 404, number
    report.refresh_from_db()
    assert report.head == 3


def test_my_drafts_lists_only_my_drafts_newest_first(clinician_client, clinician, report):
    other = make_user("other", "Clinician")
    services.start_report(author=other, patient_id=FIXED_PATIENT_ID)
    newer = services.start_report(author=clinician, patient_id="pt_1kebkmsip70g")

    page = clinician_client.get(reverse("reports:drafts")).content.decode()

    assert page.index(edit_url(newer)) < page.index(edit_url(report))
    assert len(re.findall(r'href="/reports/\d+/"', page)) == 2


def test_another_clinicians_draft_is_not_found(client, report):
    client.force_login(make_user("other", "Clinician"))

    for url in (
        edit_url(report),
        reverse("reports:history", args=[report.pk]),
        reverse("reports:payload", args=[report.pk]),
    ):
        assert client.get(url).status_code == 404


def test_supervisors_cannot_compose(client, supervisor, report):
    client.force_login(supervisor)

    assert client.get(edit_url(report)).status_code == 403
    assert client.get(reverse("reports:new")).status_code == 403


def test_with_the_api_down_the_text_is_still_saved_and_picks_are_kept(
    clinician_client, report, settings
):
    observation = patient_observations()[0]
    clinician_client.post(edit_url(report), form_data(1, results=[observation.id]))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings.CLINIKAPI_BASE_URL = f"http://127.0.0.1:{sock.getsockname()[1]}"
    clinikapi.reset_client()
    cache.clear()  # the pickers' options are kept for two minutes; this test wants them gone

    page = clinician_client.get(edit_url(report)).content.decode()
    response = clinician_client.post(edit_url(report), form_data(2, conclusion="Still here."))

    content = report.versions.get(number=3).content
    assert "ClinikAPI cannot be reached right now" in page
    assert response.status_code == 302
    assert (content["conclusion"], content["result_ids"]) == ("Still here.", [observation.id])


def test_the_payload_of_a_saved_version_is_valid_json_for_the_api(clinician_client, report):
    response = clinician_client.get(reverse("reports:payload", args=[report.pk]))

    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"patientId": FIXED_PATIENT_ID}


# --- attachments -----------------------------------------------------------------------------


@functools.cache
def corpus() -> tuple[dict[str, samples.Sample], dict[str, tuple[samples.Sample, int]]]:
    return samples.hostile_samples(), samples.clean_samples()


def a_pdf(name: str = "single text page") -> bytes:
    return corpus()[1][name][0].data


def upload(client, report: Report, data: bytes, name: str = "cbc-report.pdf", **headers: str):
    return client.post(
        reverse("reports:attachment_add", args=[report.pk]),
        {"file": SimpleUploadedFile(name, data, content_type="application/pdf")},
        headers=headers,
    )


def test_a_clean_pdf_is_attached_with_name_size_and_hash(clinician_client, report):
    data = a_pdf("five pages")

    response = upload(clinician_client, report, data, **{"HX-Request": "true"})

    page = response.content.decode()
    digest = hashlib.sha256(data).hexdigest()
    report.refresh_from_db()
    assert response.status_code == 200
    assert "cbc-report.pdf" in page and digest in page
    assert report.versions.get(number=report.head).content["attachments"] == [
        {"sha256": digest, "filename": "cbc-report.pdf", "size": len(data)}
    ]
    assert 'id="id_base_version" hx-swap-oob="true"' in page


def test_a_hostile_pdf_is_refused_with_a_clear_message_and_nothing_kept(clinician_client, report):
    hostile = corpus()[0]["javascript in the open action"].data

    response = upload(clinician_client, report, hostile, **{"HX-Request": "true"})

    assert response.status_code == 422
    assert "JavaScript" in response.content.decode()
    assert report.versions.count() == 1 and not report.attachments.exists()


def test_a_file_over_the_cap_is_refused_naming_the_limit(clinician_client, report):
    response = upload(clinician_client, report, b"%PDF-" + b"0" * 800_000, **{"HX-Request": "true"})

    assert response.status_code == 422
    assert f"at most {human_size(MAX_ATTACHMENT_BYTES)}" in response.content.decode()


def test_the_payload_carries_the_pdf_as_base64_presented_form(clinician_client, report):
    data = a_pdf()
    upload(clinician_client, report, data)

    body = clinician_client.get(reverse("reports:payload", args=[report.pk])).json()

    assert body["presentedForm"] == [
        {
            "contentType": "application/pdf",
            "title": "cbc-report",
            "data": base64.b64encode(data).decode(),
        }
    ]


def test_typing_after_attaching_keeps_the_attachment(clinician_client, report):
    upload(clinician_client, report, a_pdf())

    clinician_client.post(edit_url(report), form_data(2, conclusion="Text after the file."))

    report.refresh_from_db()
    content = report.versions.get(number=report.head).content
    assert content["conclusion"] == "Text after the file." and len(content["attachments"]) == 1


def test_removing_a_file_makes_a_version_without_it_and_keeps_the_file(clinician_client, report):
    data = a_pdf()
    upload(clinician_client, report, data)
    digest = hashlib.sha256(data).hexdigest()

    clinician_client.post(reverse("reports:attachment_remove", args=[report.pk, digest]))

    report.refresh_from_db()
    assert report.versions.get(number=report.head).content["attachments"] == []
    assert report.attachments.filter(sha256=digest).exists()  # older versions still name it


def test_a_download_is_the_exact_file_served_only_as_an_attachment(clinician_client, report):
    data = a_pdf()
    upload(clinician_client, report, data)

    response = clinician_client.get(
        reverse("reports:attachment", args=[report.pk, hashlib.sha256(data).hexdigest()])
    )

    assert response.content == data
    assert response["Content-Disposition"] == 'attachment; filename="cbc-report.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert "no-store" in response["Cache-Control"]


def test_another_clinician_cannot_download_the_file(client, clinician_client, report):
    data = a_pdf()
    upload(clinician_client, report, data)
    client.force_login(make_user("other", "Clinician"))

    response = client.get(
        reverse("reports:attachment", args=[report.pk, hashlib.sha256(data).hexdigest()])
    )

    assert response.status_code == 404
