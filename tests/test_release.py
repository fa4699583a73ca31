"""Signing and releasing: e-signature, the outbox, and the worker against the socket sandbox.

RELIABILITY SIG-01..04, SUB-01..08, REC-07; the sandbox's own store is the ground truth for
"exactly once".
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace

import pytest
from django.db import DatabaseError, transaction
from django.urls import reverse

from reports import clinikapi, outbox, services, signing, workflow
from reports.models import (
    Alert,
    AuditEvent,
    Report,
    ReportState,
    ReportVersion,
    Signature,
    Submission,
    SubmissionState,
    Transmission,
)
from reports.sandbox.faults import Fault
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.conftest import PASSWORD, make_user
from tests.releasing import (
    complete_content,
    draft,
    drain,
    fast_release_settings,
    remote_reports_of,
    sign,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(settings, api_over_socket):
    fast_release_settings(settings)
    api_over_socket.sandbox.configure(search_lag_seconds=0.2)
    return api_over_socket.sandbox


@pytest.fixture
def worker(sandbox):
    return outbox.Worker(name="test-worker")


# --- signing ---------------------------------------------------------------------------------


def test_a_wrong_password_signs_nothing_and_is_audited(clinician, sandbox):
    report = draft(clinician)
    with pytest.raises(workflow.WrongPassword):
        sign(report, clinician, password="not-my-password")
    report.refresh_from_db()
    assert report.state == ReportState.DRAFT
    assert not Signature.objects.exists()
    assert not Submission.objects.exists()
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    # The failure goes through Django's authentication, like a failed sign-in (lockout counts it).
    assert "auth.sign_in_failed" in actions
    assert "signature.refused" in actions


def test_signing_freezes_the_version_and_queues_the_release(clinician, sandbox):
    report = draft(clinician)
    result = sign(report, clinician)
    report.refresh_from_db()
    assert report.state == ReportState.RELEASING
    signature = result.signature
    assert signature.meaning == "authored"
    assert signature.version.number == report.head
    assert signature.content_hash == signing.content_hash(signature.version)
    assert signing.verify_signature(signature).ok
    submission = result.submission
    assert submission is not None and submission.state == SubmissionState.PENDING
    assert submission.payload["status"] == "preliminary"
    assert submission.payload["patientId"] == FIXED_PATIENT_ID
    actions = list(AuditEvent.objects.filter(report=report).values_list("action", flat=True))
    assert actions[-2:] == ["report.signed", "release.queued"]
    with pytest.raises(services.ReportNotEditable):
        services.save_draft(
            report_id=report.pk,
            author=clinician,
            base_version=report.head,
            content=complete_content(conclusion="Changed after signing."),
        )


def test_a_final_report_waits_for_review_when_review_is_required(clinician, sandbox, settings):
    settings.CLINIKUI_REVIEW_REQUIRED = True
    report = draft(clinician, complete_content(status="final"))
    result = sign(report, clinician)
    report.refresh_from_db()
    assert report.state == ReportState.AWAITING_REVIEW
    assert result.submission is None
    assert not Submission.objects.exists()


def test_a_final_report_is_released_at_once_when_review_is_not_required(
    clinician, sandbox, settings
):
    settings.CLINIKUI_REVIEW_REQUIRED = False
    report = draft(clinician, complete_content(status="final"))
    assert sign(report, clinician).submission is not None


def test_only_the_author_signs_and_only_what_they_saw(clinician, sandbox):
    report = draft(clinician)
    other = make_user("other-clinician", "Clinician")
    with pytest.raises(workflow.SigningRefused, match="Only the author"):
        sign(report, other)
    with pytest.raises(workflow.SigningRefused, match="changed after you opened it"):
        sign(report, clinician, version=report.head - 1)
    assert not Signature.objects.exists()


def test_an_incomplete_report_cannot_be_signed(clinician, sandbox):
    report = draft(clinician, complete_content(status=""))
    with pytest.raises(workflow.SigningRefused, match="Status"):
        sign(report, clinician)


def test_the_same_form_twice_gives_one_signature_and_one_release(clinician, sandbox):
    report = draft(clinician)
    token = uuid.uuid4()
    first = sign(report, clinician, token=token)
    again = sign(report, clinician, token=token)
    assert again.replayed and again.signature.pk == first.signature.pk
    assert Signature.objects.count() == 1
    assert Submission.objects.count() == 1


def test_a_token_reused_for_other_content_is_refused(clinician, sandbox):
    report = draft(clinician)
    token = uuid.uuid4()
    sign(report, clinician, token=token)
    with pytest.raises(workflow.TokenReused):
        sign(report, clinician, token=token, version=report.head - 1)


# --- signature integrity (SIG-04, X3) -----------------------------------------------------------


def test_editing_signed_content_fails_verification(clinician, sandbox):
    report = draft(clinician)
    signature = sign(report, clinician).signature
    ReportVersion.objects.filter(pk=signature.version_id).update(
        content={**signature.version.content, "conclusion": "Quietly changed."}
    )
    check = signing.verify_signature(signature)
    assert not check.ok and "changed" in check.reason


def test_a_signature_pointed_at_another_version_or_copied_to_another_report_fails(
    clinician, sandbox
):
    first = draft(clinician)
    signature = sign(first, clinician).signature
    # A second report with exactly the same content.
    second = draft(clinician)
    twin = second.versions.get(number=second.head)
    assert twin.content == signature.version.content

    repointed = Signature.objects.get(pk=signature.pk)
    repointed.version_id = first.versions.get(number=1).pk
    assert not signing.verify_signature(repointed).ok

    copied = Signature(
        report=second,
        version=twin,
        signer=clinician,
        printed_name=signature.printed_name,
        meaning=signature.meaning,
        content_hash=signature.content_hash,
    )
    assert not signing.verify_signature(copied).ok
    moved = Signature(
        report=first,
        version=twin,
        signer=clinician,
        printed_name=signature.printed_name,
        meaning=signature.meaning,
        content_hash=signature.content_hash,
    )
    assert "another report" in signing.verify_signature(moved).reason


def test_the_database_refuses_to_change_a_signature(clinician, sandbox):
    report = draft(clinician)
    signature = sign(report, clinician).signature
    with pytest.raises(DatabaseError), transaction.atomic():
        Signature.objects.filter(pk=signature.pk).update(content_hash="0" * 64)


def test_a_changed_attached_file_fails_verification(clinician, sandbox):
    from tests.pdfs.samples import document, save

    report = draft(clinician)
    services.attach_pdf(
        report_id=report.pk, author=clinician, filename="scan.pdf", data=save(document())
    )
    report.refresh_from_db()
    signature = sign(report, clinician).signature
    files = services.attachment_bytes(report)
    assert signing.verify_signature(signature, file_bytes=files).ok
    sha = signature.version.content["attachments"][0]["sha256"]
    assert not signing.verify_signature(signature, file_bytes=lambda _: b"%PDF-1.7 other").ok
    assert signing.verify_signature(signature, file_bytes=lambda s: files(s) if s == sha else b"")


# --- releasing through the worker --------------------------------------------------------------


def test_a_release_reaches_clinikapi_once_with_the_signed_pdf_and_reads_back(
    clinician, sandbox, worker
):
    report = draft(clinician)
    sign(report, clinician)
    drain(worker, until=lambda: Submission.objects.get().read_back != "")
    submission = Submission.objects.get()
    report.refresh_from_db()
    assert submission.state == SubmissionState.SENT
    assert submission.read_back == Submission.ReadBack.MATCH
    assert report.state == ReportState.RELEASED
    assert report.remote_id == submission.remote_id != ""
    assert submission.request_id
    stored = remote_reports_of(sandbox, report)
    assert len(stored) == 1
    lab = stored[0]
    assert lab["id"] == report.remote_id
    assert lab["status"] == "preliminary"
    (form,) = lab["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert report.number in form["title"]
    assert base64.b64decode(form["data"]).startswith(b"%PDF-")
    assert base64.b64decode(form["data"]) == bytes(submission.pdf or b"")
    actions = list(AuditEvent.objects.filter(report=report).values_list("action", flat=True))
    assert "report.released" in actions and "release.read_back" in actions


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_5xx_is_reconciled_never_blindly_resent(clinician, sandbox, worker, status, when):
    """F3: after storing, the stored report is adopted; before storing, it is sent again only
    after two searches found nothing."""
    report = draft(clinician)
    sign(report, clinician)
    sandbox.faults.push(Fault.server_error(status, route="POST /v1/labs", when=when))
    drain(worker, until=lambda: Submission.objects.get().state == SubmissionState.SENT)
    assert len(remote_reports_of(sandbox, report)) == 1
    submission = Submission.objects.get()
    outcomes = list(submission.tries.values_list("action", "outcome"))
    assert outcomes[0] == ("send", "unknown")
    if when == "after":
        assert ("reconcile", "adopted") in outcomes
        assert submission.attempts == 1
    else:
        assert ("reconcile", "not_found_first") in outcomes
        assert ("reconcile", "not_found_second") in outcomes
        assert submission.attempts == 2


@pytest.mark.parametrize(
    "fault",
    [
        Fault.hang(5, route="POST /v1/labs", when="after"),
        Fault.drop(route="POST /v1/labs", when="after"),
        Fault.connection_reset(route="POST /v1/labs", when="after"),
        Fault.garbage(route="POST /v1/labs", when="after"),
    ],
    ids=["hang", "drop", "reset", "garbage"],
)
def test_a_lost_response_after_storing_is_adopted(clinician, sandbox, worker, fault):
    """F5: the report was created but the answer never came: exactly one remote report."""
    report = draft(clinician)
    sign(report, clinician)
    sandbox.faults.push(fault)
    drain(worker, until=lambda: Submission.objects.get().state == SubmissionState.SENT)
    assert len(remote_reports_of(sandbox, report)) == 1
    assert Submission.objects.get().attempts == 1


def test_validation_refusal_returns_the_report_to_its_author_with_the_fields(
    clinician, sandbox, worker, clinician_client
):
    report = draft(clinician)
    sign(report, clinician)
    sandbox.faults.push(
        Fault.error(422, "VALIDATION_ERROR", route="POST /v1/labs", message="Validation failed")
    )
    drain(worker, until=lambda: Submission.objects.get().state == SubmissionState.RETURNED)
    report.refresh_from_db()
    assert report.state == ReportState.DRAFT
    assert remote_reports_of(sandbox, report) == []
    page = clinician_client.get(reverse("reports:edit", args=[report.pk]))
    assert page.status_code == 200
    assert b"ClinikAPI refused version" in page.content


def test_a_refused_key_holds_every_release_and_alerts_once(clinician, sandbox, worker):
    first, second = draft(clinician), draft(clinician)
    sign(first, clinician)
    sign(second, clinician)
    sandbox.faults.push(Fault.error(401, "UNAUTHORIZED", route="POST /v1/labs", times=None))
    drain(worker, until=lambda: Transmission.objects.filter(hold="credentials").exists())
    assert not worker.step()  # held: nothing more is tried
    assert Alert.objects.filter(kind="transmission.credentials").count() == 1
    assert Submission.objects.filter(state=SubmissionState.PARKED).count() == 1
    assert Submission.objects.filter(state=SubmissionState.PENDING).count() == 1
    sandbox.faults.clear()
    assert outbox.resume_sending() == 1
    drain(worker, until=lambda: Submission.objects.filter(state=SubmissionState.SENT).count() == 2)
    assert len(remote_reports_of(sandbox, first)) == len(remote_reports_of(sandbox, second)) == 1


def test_an_exhausted_quota_holds_everything_without_retrying(clinician, sandbox, worker):
    report = draft(clinician)
    sign(report, clinician)
    sandbox.faults.push(Fault.monthly_quota(route="POST /v1/labs", times=None))
    drain(worker, until=lambda: Transmission.objects.filter(hold="quota").exists())
    posts = [r for r in sandbox.store.requests if r.method == "POST"]
    assert len(posts) == 1
    for _ in range(5):
        assert not worker.step()
    assert len([r for r in sandbox.store.requests if r.method == "POST"]) == 1


def test_a_rate_limit_pauses_every_worker_until_the_advertised_time(clinician, sandbox):
    report = draft(clinician)
    sign(report, clinician)
    sandbox.faults.push(Fault.rate_limited(retry_after=1, route="POST /v1/labs"))
    one, two = outbox.Worker(name="one"), outbox.Worker(name="two")
    assert one.step()
    gate = Transmission.objects.get()
    assert gate.paused_until is not None
    assert not two.step()  # the pause is global, not per worker
    drain(two, until=lambda: Submission.objects.get().state == SubmissionState.SENT)
    posts = [r for r in sandbox.store.requests if r.method == "POST"]
    assert len(posts) == 2
    gap = posts[1].at - posts[0].at
    assert gap >= 1.0  # never inside the advertised wait
    assert len(remote_reports_of(sandbox, report)) == 1


def test_an_unreachable_api_keeps_reports_waiting_and_opens_the_breaker(
    clinician, settings, live_sandbox, clinician_client, monkeypatch
):
    """F1: the port is closed; nothing is lost, the banner says so, sending resumes after."""
    fast_release_settings(settings)
    monkeypatch.setattr(clinikapi, "BACKOFF_CAP_SECONDS", 0.05)
    settings.CLINIKAPI_BASE_URL = live_sandbox.url
    clinikapi.reset_client()
    reports = [draft(clinician) for _ in range(3)]
    for report in reports:
        sign(report, clinician)
    url, port = live_sandbox.url, live_sandbox.port
    live_sandbox.stop()
    worker = outbox.Worker(name="w")
    drain(
        worker,
        until=lambda: Transmission.objects.filter(
            consecutive_failures__gte=settings.CLINIKUI_BREAKER_THRESHOLD
        ).exists(),
    )
    gate = Transmission.objects.get()
    assert gate.consecutive_failures >= settings.CLINIKUI_BREAKER_THRESHOLD
    assert gate.unreachable_since is not None
    assert Submission.objects.filter(state=SubmissionState.PENDING).count() == 3
    from django.core.cache import cache

    cache.clear()
    page = clinician_client.get(reverse("reports:drafts"))
    assert b"ClinikAPI unreachable since" in page.content
    assert b"3 reports waiting" in page.content

    from reports.sandbox import Sandbox, SandboxConfig
    from reports.sandbox.server import serve_in_thread

    back = serve_in_thread(Sandbox(SandboxConfig()), port=port)
    try:
        assert back.url == url
        drain(
            worker,
            until=lambda: Submission.objects.filter(state=SubmissionState.SENT).count() == 3,
        )
        for report in reports:
            assert len(remote_reports_of(back.sandbox, report)) == 1
        # Drained in the order they were signed.
        created = [write.resource_id for write in back.sandbox.store.created("labs")]
        expected = list(
            Submission.objects.order_by("created_at", "pk").values_list("remote_id", flat=True)
        )
        assert created == expected
    finally:
        back.stop()


def test_a_result_of_another_patient_is_refused_before_sending(clinician, sandbox, worker):
    """REC-07: whatever the draft says, the worker checks each result's patient by reading it."""
    api = clinikapi.get_client()
    other_patient = next(p.id for p in clinikapi.iter_all(api.search_patients))
    assert other_patient != FIXED_PATIENT_ID
    stranger = next(clinikapi.iter_all(api.search_observations, patient_id=other_patient))
    content = complete_content()
    # As a forged POST would have tried (the composer's form refuses it; the worker checks too).
    report = draft(clinician, replace(content, result_ids=(*content.result_ids, stranger.id)))
    sign(report, clinician)
    drain(worker, until=lambda: Submission.objects.get().state == SubmissionState.RETURNED)
    assert "another patient" in Submission.objects.get().error_message
    assert remote_reports_of(sandbox, report) == []
    assert Report.objects.get(pk=report.pk).state == ReportState.DRAFT


def test_content_changed_after_signing_is_never_sent(clinician, sandbox, worker):
    """X3: the worker verifies the signature before every send."""
    report = draft(clinician)
    signature = sign(report, clinician).signature
    ReportVersion.objects.filter(pk=signature.version_id).update(
        content={**signature.version.content, "conclusion": "Quietly changed."}
    )
    drain(worker, until=lambda: Submission.objects.get().state == SubmissionState.PARKED)
    assert Submission.objects.get().error_code == "SIGNATURE_INVALID"
    assert remote_reports_of(sandbox, report) == []
    assert not [r for r in sandbox.store.requests if r.method == "POST"]
    assert Alert.objects.filter(kind="release.signature_invalid").count() == 1


# --- through the pages ---------------------------------------------------------------------


def test_the_sign_page_signs_with_the_password_and_shows_the_release(
    clinician, sandbox, clinician_client, worker
):
    report = draft(clinician)
    page = clinician_client.get(reverse("reports:sign", args=[report.pk]))
    assert page.status_code == 200
    assert b"Sign and release" in page.content
    form = page.context["form"]
    data = {
        "password": "wrong",
        "version": form.initial["version"],
        "token": str(form.initial["token"]),
    }
    refused = clinician_client.post(reverse("reports:sign", args=[report.pk]), data)
    assert refused.status_code == 422
    assert b"The password is not correct" in refused.content
    data["password"] = PASSWORD
    signed = clinician_client.post(reverse("reports:sign", args=[report.pk]), data)
    assert signed.status_code == 303
    assert signed["Location"] == reverse("reports:release", args=[report.pk])
    again = clinician_client.post(reverse("reports:sign", args=[report.pk]), data)
    assert again.status_code == 303  # the same form again: the same result, nothing new
    assert Submission.objects.count() == 1
    drain(worker, until=lambda: Submission.objects.get().read_back != "")
    status = clinician_client.get(reverse("reports:release", args=[report.pk]))
    report.refresh_from_db()
    text = status.content.decode()
    assert "Released" in text and report.remote_id in text
    assert Submission.objects.get().request_id in text
    assert Signature.objects.get().content_hash in text
    assert "Matches what was signed" in text
    listed = clinician_client.get(reverse("reports:signed")).content.decode()
    assert report.number in listed and report.remote_id in listed and "Released" in listed
    assert report.number not in clinician_client.get(reverse("reports:drafts")).content.decode()
    # The composer now leads to this page: signed content is not edited in place.
    assert clinician_client.get(reverse("reports:edit", args=[report.pk]))["Location"].endswith(
        reverse("reports:release", args=[report.pk])
    )
    pdf = clinician_client.get(
        reverse("reports:signed_pdf", args=[report.pk, Submission.objects.get().pk])
    )
    assert pdf.status_code == 200
    assert pdf["Content-Disposition"].startswith("attachment")
    assert pdf["X-Content-Type-Options"] == "nosniff"
    assert b"".join(pdf.streaming_content if pdf.streaming else [pdf.content]).startswith(b"%PDF-")


def test_another_clinician_cannot_sign_or_see_the_release(clinician, sandbox, client):
    report = draft(clinician)
    other = make_user("someone-else", "Clinician")
    client.force_login(other)
    assert client.get(reverse("reports:sign", args=[report.pk])).status_code == 404
    assert client.get(reverse("reports:release", args=[report.pk])).status_code == 404


def test_a_signed_pdf_too_large_to_send_returns_the_report_to_its_author(
    clinician, sandbox, worker, monkeypatch
):
    from reports import signed_documents
    from reports.signed_pdf import SignedPDFTooLarge

    def too_large(*args, **kwargs):
        raise SignedPDFTooLarge(200 * 1024)

    monkeypatch.setattr(signed_documents, "render", too_large)
    report = draft(clinician)
    sign(report, clinician)
    drain(worker, until=lambda: Submission.objects.get().state == SubmissionState.RETURNED)
    submission = Submission.objects.get()
    assert submission.error_code == "PDF_TOO_LARGE"
    assert "to fit ClinikAPI's limit" in submission.error_message
    assert not [r for r in sandbox.store.requests if r.method == "POST"]
    assert Report.objects.get(pk=report.pk).state == ReportState.DRAFT


def test_a_stored_copy_that_differs_from_what_was_signed_is_flagged(clinician, sandbox, worker):
    """Read-back: ClinikAPI's copy is compared with the signed body; a difference alerts."""
    report = draft(clinician)
    sign(report, clinician)
    drain(worker, until=lambda: Submission.objects.get().state == SubmissionState.SENT)
    assert Submission.objects.get().read_back == ""  # read back by the worker's next step
    (lab,) = remote_reports_of(sandbox, report)
    sandbox.store.replace(
        "labs",
        "test",
        "org_sandbox",
        {**lab, "conclusion": "Changed on the other side."},
        lag=0,
        request_id="req_tamper",
        timestamp="2026-11-24T00:00:00Z",
    )
    drain(worker, until=lambda: Submission.objects.get().read_back != "")
    submission = Submission.objects.get()
    assert submission.read_back == Submission.ReadBack.MISMATCH
    assert submission.read_back_differences == ["conclusion"]
    assert Alert.objects.filter(kind="release.read_back_mismatch").count() == 1
