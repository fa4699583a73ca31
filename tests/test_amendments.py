"""Amending, correcting, appending and cancelling released reports (DESIGN "lifecycle",
CONTRACT §11.4, RELIABILITY REC-04): a new signed version sent as one PATCH, with its reason;
the released version stays readable."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.urls import reverse

from reports import amendments, outbox, services, signing, workflow
from reports.forms import ReportForm
from reports.models import (
    Alert,
    Amendment,
    AuditEvent,
    Report,
    ReportState,
    Signature,
    Submission,
    SubmissionState,
)
from reports.payload import SNOMED_CT, CodedConcept, ReportContent
from reports.sandbox.faults import Fault
from terminology import loading
from tests.conftest import PASSWORD, make_user
from tests.pdfs import samples
from tests.releasing import (
    complete_content,
    draft,
    drain,
    fast_release_settings,
    patches_of,
    pdf_text,
    settled,
    sign,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(settings, api_over_socket):
    fast_release_settings(settings)
    settings.CLINIKUI_REVIEW_REQUIRED = True
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = True
    return api_over_socket.sandbox


@pytest.fixture
def released(clinician, sandbox) -> Report:
    report = draft(clinician, complete_content(status="preliminary"))
    sign(report, clinician)
    drain(outbox.Worker(), until=lambda: settled(report))
    report.refresh_from_db()
    assert report.state == ReportState.RELEASED and report.remote_id
    return report


def _amend(report: Report, user: User, kind: str = "amended", **changes: Any) -> ReportContent:
    amendments.start_amendment(
        report_id=report.pk,
        user=user,
        kind=kind,
        reason=Amendment.Reason.INTERPRETATION,
        explanation="Repeat haemoglobin changes the interpretation.",
    )
    report.refresh_from_db()
    head = ReportContent.from_json(report.versions.get(number=report.head).content)
    content = dataclasses.replace(head, **changes)
    if changes:
        services.save_draft(
            report_id=report.pk, author=user, base_version=report.head, content=content
        )
        report.refresh_from_db()
    return content


def _verify(report: Report, verifier: User) -> workflow.SignResult:
    return workflow.verify_report(
        request=RequestFactory().post("/"),
        report_id=report.pk,
        verifier=verifier,
        password=PASSWORD,
        version_number=report.head,
        token=uuid.uuid4(),
    )


def test_an_amendment_is_reviewed_then_sent_as_one_patch_with_complete_lists(
    released, clinician, supervisor, sandbox
):
    original = released.versions.get(number=released.head)
    original_signature = Signature.objects.get(report=released)
    _amend(released, clinician, conclusion="Moderate anaemia on repeat testing.")
    result = sign(released, clinician)
    assert result.submission is None  # amendments wait for review (the setting is on)
    released.refresh_from_db()
    assert released.state == ReportState.AWAITING_REVIEW
    assert _verify(released, supervisor).submission is not None
    drain(outbox.Worker(), until=lambda: settled(released))

    (patch,) = patches_of(sandbox, released)
    assert patch["status"] == "amended"
    assert patch["conclusion"] == "Moderate anaemia on repeat testing."
    # Lists travel complete; what ClinikAPI cannot change is never sent (CONTRACT §11.4).
    assert patch["resultIds"] == list(ReportContent.from_json(original.content).result_ids)
    assert [c["code"] for c in patch["conclusionCodes"]] == ["271737000"]
    assert not {"patientId", "code", "category", "encounterId", "specimenIds"} & set(patch)
    # The new signed PDF, and the one it supersedes resent so that ClinikAPI keeps it (§11.4).
    titles = [item["title"] for item in patch["presentedForm"]]
    assert titles == [
        f"ClinikUI report {released.number} v{released.head} (signed)",
        f"ClinikUI report {released.number} v{original.number} (signed)",
    ]

    (lab,) = [lab for lab in sandbox.store.labs() if lab["id"] == released.remote_id]
    assert lab["status"] == "amended" and lab["conclusion"].startswith("Moderate")
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED
    update = Submission.objects.get(report=released, operation=Submission.Operation.UPDATE)
    assert update.read_back == "match"
    # The released version and its signature are untouched and still verify.
    original.refresh_from_db()
    assert ReportContent.from_json(original.content).conclusion == "Mild normocytic anaemia."
    original_signature.refresh_from_db()
    assert signing.verify_signature(original_signature).ok
    # The PDF sent with the PATCH names the change and the reason.
    assert update.pdf is not None
    text = pdf_text(bytes(update.pdf))
    assert f"Changes since version {original.number}" in text
    assert "Interpretation: Repeat haemoglobin changes the interpretation." in text
    assert "Mild normocytic anaemia." in text and "Moderate anaemia on repeat testing." in text
    amendment = Amendment.objects.get(report=released)
    assert amendment.released_at is not None and amendment.version_id == update.version_id


def test_without_review_an_amendment_is_sent_when_signed(released, clinician, sandbox, settings):
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = False
    _amend(released, clinician, "corrected", conclusion_codes=())
    assert sign(released, clinician).submission is not None
    drain(outbox.Worker(), until=lambda: settled(released))
    (patch,) = patches_of(sandbox, released)
    assert patch["status"] == "corrected"
    assert patch["conclusionCodes"] == []  # an emptied list is sent empty, not left out


def test_fields_clinikapi_cannot_change_are_locked_in_the_composer(
    released, clinician, clinician_client
):
    loading.load_starter_set()
    _amend(released, clinician)
    head = released.versions.get(number=released.head)
    page = clinician_client.get(reverse("reports:edit", args=[released.pk])).content.decode()
    assert 'id="amendment-banner"' in page and 'id="report-code-locked"' in page
    assert 'name="status" id="id_status" class="form-select" disabled' in page
    # A forged post of other values changes nothing locked: disabled fields keep their value.
    response = clinician_client.post(
        reverse("reports:edit", args=[released.pk]),
        {
            "base_version": head.number,
            "report_code": "24323-8",
            "category": "RAD",
            "status": "final",
            "encounter": "enc_other",
            "conclusion": "Changed.",
            "results": list(ReportContent.from_json(head.content).result_ids),
            "conclusion_codes": ["271737000"],
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    released.refresh_from_db()
    saved = ReportContent.from_json(released.versions.get(number=released.head).content)
    assert saved.conclusion == "Changed."
    assert (saved.code.code if saved.code else "", saved.category, saved.status) == (
        "58410-2",
        "LAB",
        "amended",
    )


def test_a_changed_locked_field_is_refused_at_signing(released, clinician):
    # Whatever path changed it (here the service layer directly), signing refuses it.
    content = _amend(released, clinician, category="PAT")
    assert content.category == "PAT"
    with pytest.raises(workflow.SigningRefused, match="Category cannot change"):
        sign(released, clinician)


def test_appended_refuses_changes_to_what_was_released(released, clinician):
    _amend(released, clinician, "appended", conclusion="Mild anaemia.")
    with pytest.raises(workflow.SigningRefused, match="may only add"):
        sign(released, clinician)
    head = ReportContent.from_json(released.versions.get(number=released.head).content)
    services.save_draft(
        report_id=released.pk,
        author=clinician,
        base_version=released.head,
        content=dataclasses.replace(
            head,
            conclusion="Mild normocytic anaemia. Addendum: ferritin 8 ng/mL.",
            conclusion_codes=(*head.conclusion_codes, CodedConcept(SNOMED_CT, "87522002")),
        ),
    )
    released.refresh_from_db()
    assert sign(released, clinician).signature.meaning == "amended"


def test_an_amendment_that_changes_nothing_cannot_be_signed(released, clinician):
    _amend(released, clinician)
    with pytest.raises(workflow.SigningRefused, match="does not change anything"):
        sign(released, clinician)


def test_only_a_released_report_of_ones_own_can_be_amended(released, clinician, supervisor):
    with pytest.raises(amendments.AmendmentRefused, match="Only the author"):
        amendments.start_amendment(
            report_id=released.pk, user=supervisor, kind="amended", reason="other", explanation="x"
        )
    _amend(released, clinician)
    with pytest.raises(amendments.AmendmentRefused, match="only a released report"):
        _amend(released, clinician)


def test_a_discarded_amendment_leaves_the_report_as_released(released, clinician, sandbox):
    _amend(released, clinician, conclusion="Never mind.")
    amendments.discard_amendment(report_id=released.pk, user=clinician)
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED
    assert Amendment.objects.get().discarded_at is not None
    # A new amendment starts from the released version, not from the discarded text.
    content = _amend(released, clinician)
    assert content.conclusion == "Mild normocytic anaemia."
    assert patches_of(sandbox, released) == []


def test_the_author_cancels_with_reason_and_password(released, clinician, sandbox):
    client = Client()
    client.force_login(clinician)
    url = reverse("reports:cancel", args=[released.pk])
    page = client.get(url)
    assert page.status_code == 200
    token = page.context["form"].initial["token"]
    form = {"reason": "misidentification", "explanation": "Wrong patient.", "token": token}
    wrong = client.post(url, {**form, "password": "not-it", "version": released.head})
    assert wrong.status_code == 422
    assert "The password is not correct" in wrong.content.decode()
    assert released.signatures.filter(meaning="cancelled").count() == 0
    done = client.post(url, {**form, "password": PASSWORD, "version": released.head})
    assert done.status_code == 303
    again = client.post(url, {**form, "password": PASSWORD, "version": released.head})
    assert again.status_code == 303  # the same form twice: one cancellation
    drain(outbox.Worker(), until=lambda: settled(released))
    assert patches_of(sandbox, released)[0]["status"] == "cancelled"
    assert len(patches_of(sandbox, released)) == 1
    released.refresh_from_db()
    assert released.state == ReportState.CANCELLED
    assert Signature.objects.filter(report=released, meaning="cancelled").count() == 1
    actions = list(AuditEvent.objects.filter(report=released).values_list("action", flat=True))
    assert "report.cancellation_signed" in actions and "report.cancelled" in actions
    release_page = client.get(reverse("reports:release", args=[released.pk])).content.decode()
    assert "Wrong patient." in release_page and 'id="amend-link"' not in release_page


def test_a_supervisor_may_cancel_another_clinician_may_not(released, supervisor):
    other = make_user("other-clinician", "Clinician")
    client = Client()
    client.force_login(other)
    assert client.get(reverse("reports:cancel", args=[released.pk])).status_code == 404
    client.force_login(supervisor)
    assert client.get(reverse("reports:cancel", args=[released.pk])).status_code == 200
    amendments.cancel_report(
        request=RequestFactory().post("/"),
        report_id=released.pk,
        user=supervisor,
        password=PASSWORD,
        reason="report_defect",
        explanation="Duplicate of another report.",
        token=uuid.uuid4(),
        version_number=released.head,
    )
    released.refresh_from_db()
    assert released.state == ReportState.RELEASING


def test_a_cancellation_clinikapi_refuses_leaves_the_report_released(released, clinician, sandbox):
    sandbox.faults.push(Fault.error(404, "NOT_FOUND", route="PATCH /v1/labs/*"))
    amendments.cancel_report(
        request=RequestFactory().post("/"),
        report_id=released.pk,
        user=clinician,
        password=PASSWORD,
        reason="other",
        explanation="Sent in error.",
        token=uuid.uuid4(),
        version_number=released.head,
    )
    drain(outbox.Worker(), until=lambda: settled(released))
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED
    assert Amendment.objects.get().discarded_at is not None
    # And it can be cancelled again once the cause is fixed.
    client = Client()
    client.force_login(clinician)
    assert client.get(reverse("reports:cancel", args=[released.pk])).status_code == 200


def test_the_timeline_lists_every_step_with_who_and_why(released, clinician, supervisor):
    _amend(released, clinician, conclusion="Moderate anaemia.")
    sign(released, clinician)
    client = Client()
    client.force_login(supervisor)
    page = client.get(reverse("reports:review", args=[released.pk])).content.decode()
    # The reviewer sees the change against the released version and the reason.
    assert 'id="amendment-summary"' in page and "Repeat haemoglobin" in page
    assert "<del>Mild normocytic</del>" in page.replace("\n", "")
    timeline = page[page.index('id="timeline"') :]
    for step in (
        "Version 2: saved",
        "Signed: authored",
        "Signed: amended",
        "Released to ClinikAPI",
        "Amendment started (amended) from released version 2",
        "Interpretation: Repeat haemoglobin changes the interpretation.",
    ):
        assert step in timeline, step


def test_batch_verify_refuses_a_report_that_changed_after_the_queue_was_read(
    clinician, supervisor, sandbox
):
    first = draft(clinician, complete_content(status="final"))
    second = draft(clinician, complete_content(status="final", conclusion="Normal."))
    for report in (first, second):
        sign(report, clinician)
        report.refresh_from_db()
    client = Client()
    client.force_login(supervisor)
    queue = client.get(reverse("reports:review_queue"))
    token = queue.context["form"].initial["token"]
    seen = [f"{first.pk}:{first.head}", f"{second.pk}:{second.head}"]
    # Meanwhile another supervisor returns the second; its author changes and re-signs it.
    workflow.return_report(
        report_id=second.pk, reviewer=make_user("sup2", "Supervisor"), version_number=2, comment="x"
    )
    head = ReportContent.from_json(second.versions.get(number=second.head).content)
    services.save_draft(
        report_id=second.pk,
        author=clinician,
        base_version=second.head,
        content=dataclasses.replace(head, conclusion="Normal. Reviewed."),
    )
    second.refresh_from_db()
    sign(second, clinician)

    wrong = client.post(
        reverse("reports:review_queue"), {"reports": seen, "password": "no", "token": token}
    )
    assert wrong.status_code == 422 and Signature.objects.filter(meaning="verified").count() == 0
    response = client.post(
        reverse("reports:review_queue"), {"reports": seen, "password": PASSWORD, "token": token}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert f"<strong>{first.number}</strong> (version 2): Verified" in body
    assert f"<strong>{second.number}</strong> (version 2): The report changed" in body
    verified = Signature.objects.filter(meaning="verified")
    assert list(verified.values_list("report", flat=True)) == [first.pk]
    # The same batch posted again verifies nothing twice.
    client.post(
        reverse("reports:review_queue"), {"reports": seen, "password": PASSWORD, "token": token}
    )
    assert verified.count() == 1


def test_batch_verify_never_verifies_the_supervisors_own_report(sandbox):
    both = make_user("dual", "Clinician")
    both.groups.add(Group.objects.get(name="Supervisor"))
    report = draft(both, complete_content(status="final"))
    sign(report, both)
    report.refresh_from_db()
    outcomes = workflow.verify_many(
        request=RequestFactory().post("/"),
        verifier=both,
        password=PASSWORD,
        choices=[(report.pk, report.head)],
        token=uuid.uuid4(),
    )
    assert [o.verified for o in outcomes] == [False]
    assert "another supervisor" in outcomes[0].message
    assert not Signature.objects.filter(meaning="verified").exists()


def test_authors_are_notified_of_returns_and_verifications(clinician, supervisor, sandbox):
    report = draft(clinician, complete_content(status="final"))
    sign(report, clinician)
    report.refresh_from_db()
    author = Client()
    author.force_login(clinician)
    reviewer = Client()
    reviewer.force_login(supervisor)
    assert (
        'id="review-waiting">1<' in reviewer.get(reverse("reports:review_queue")).content.decode()
    )
    workflow.return_report(
        report_id=report.pk, reviewer=supervisor, version_number=report.head, comment="Add units."
    )
    page = author.get(reverse("reports:drafts")).content.decode()
    assert 'id="unread-notifications">1' in page
    listing = author.get(reverse("reports:notifications")).content.decode()
    assert "Returned to you by a supervisor" in listing and report.number in listing
    author.post(reverse("reports:notifications"))
    assert 'id="unread-notifications"' not in author.get(reverse("reports:drafts")).content.decode()
    # Another user sees none of it.
    other = Client()
    other.force_login(make_user("someone", "Clinician"))
    assert report.number not in other.get(reverse("reports:notifications")).content.decode()


def test_the_review_queue_flags_reports_with_critical_results(clinician, supervisor, sandbox):
    loading.load_starter_set()
    content = complete_content(status="final", results=2)
    critical_id = content.result_ids[0]
    observation = sandbox.store.get("observations", "test", "org_sandbox", critical_id)
    sandbox.store.replace(
        "observations",
        "test",
        "org_sandbox",
        {**observation, "interpretation": "HH"},
        lag=0.0,
        request_id="test",
        timestamp="2026-11-24T07:00:00.000Z",
    )
    report = draft(clinician, complete_content(status="final", results=0))
    author = Client()
    author.force_login(clinician)
    head = report.versions.get(number=report.head)
    form = ReportForm.initial_from(content, base_version=head.number)
    posted = {
        **{key: value for key, value in form.items() if value not in (None, "")},
        "results": list(content.result_ids),
        "effective": "2026-11-20T07:40",
        "time_zone": "UTC",
    }
    response = author.post(reverse("reports:edit", args=[report.pk]), posted)
    assert response.status_code == 302, response.context and response.context["form"].errors
    report.refresh_from_db()
    assert report.critical_results == [critical_id]
    sign(report, clinician)
    reviewer = Client()
    reviewer.force_login(supervisor)
    queue = reviewer.get(reverse("reports:review_queue")).content.decode()
    assert "1 critical" in queue
    page = reviewer.get(reverse("reports:review", args=[report.pk])).content.decode()
    assert f"<code>{critical_id}</code>" in page[page.index('id="critical-results"') :]


def _cancel(report: Report, user: User, **extra: Any) -> Signature:
    return amendments.cancel_report(
        request=RequestFactory().post("/"),
        report_id=report.pk,
        user=user,
        password=PASSWORD,
        reason="misidentification",
        explanation="Wrong patient.",
        token=uuid.uuid4(),
        version_number=extra.pop("version_number", report.head),
    )


def test_a_cancellation_changes_the_status_alone_even_if_a_result_is_gone(
    released, clinician, sandbox
):
    # Misidentification: a chosen result has since been removed from this patient's record.
    gone = ReportContent.from_json(released.versions.get(number=released.head).content)
    sandbox.store.delete(
        "observations",
        "test",
        "org_sandbox",
        gone.result_ids[0],
        lag=0.0,
        request_id="test",
        timestamp="2026-11-24T07:00:00.000Z",
    )
    _cancel(released, clinician)
    drain(outbox.Worker(), until=lambda: settled(released))
    assert patches_of(sandbox, released) == [{"status": "cancelled"}]
    released.refresh_from_db()
    assert released.state == ReportState.CANCELLED
    (lab,) = [lab for lab in sandbox.store.labs() if lab["id"] == released.remote_id]
    assert [item["title"] for item in lab["presentedForm"]] == [
        f"ClinikUI report {released.number} v2 (signed)"
    ]  # the released report's signed PDF stays in ClinikAPI
    cancellation = Submission.objects.get(report=released, operation="update")
    assert cancellation.read_back == "match" and cancellation.pdf is None


def test_a_cancellation_of_a_version_that_was_superseded_meanwhile_is_refused(
    released, clinician, supervisor, settings
):
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = False
    seen = released.head
    _amend(released, clinician, conclusion="Moderate anaemia.")
    sign(released, clinician)
    drain(outbox.Worker(), until=lambda: settled(released))
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED and released.head > seen
    with pytest.raises(amendments.AmendmentRefused, match="released again"):
        _cancel(released, supervisor, version_number=seen)


def test_a_supervisor_may_discard_an_unsigned_amendment_and_the_report_reads_as_released(
    released, clinician, supervisor
):
    _amend(released, clinician, conclusion="Unfinished.")
    other = make_user("other-clinician", "Clinician")
    with pytest.raises(amendments.AmendmentRefused, match="author or a supervisor"):
        amendments.discard_amendment(report_id=released.pk, user=other)
    amendments.discard_amendment(report_id=released.pk, user=supervisor)
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED
    assert released.head == Submission.objects.get(report=released).version.number
    # ... so a cancellation (whose form carries the head) can go ahead.
    assert _cancel(released, supervisor).meaning == "cancelled"


def test_an_update_whose_outcome_is_unknown_is_read_back_before_it_is_resent(
    released, clinician, sandbox, settings
):
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = False
    sandbox.faults.push(Fault.server_error(500, route="PATCH /v1/labs/*", when="after"))
    _amend(released, clinician, conclusion="Moderate anaemia.")
    sign(released, clinician)
    drain(outbox.Worker(), until=lambda: settled(released))
    update = Submission.objects.get(report=released, operation="update")
    assert len(patches_of(sandbox, released)) == 1  # applied by ClinikAPI: adopted, not resent
    assert [t.outcome for t in update.tries.filter(action="reconcile")] == ["adopted"]
    assert update.state == SubmissionState.SENT and update.read_back == "match"


def test_an_update_superseded_in_clinikapi_is_held_not_resent(
    released, clinician, sandbox, settings
):
    """A backup restored after a later amendment was sent: resending the older PATCH would
    undo the later one in ClinikAPI."""
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = False
    _amend(released, clinician, conclusion="Moderate anaemia.")
    sign(released, clinician)
    drain(outbox.Worker(), until=lambda: settled(released))
    update = Submission.objects.get(report=released, operation="update")
    lab = next(lab for lab in sandbox.store.labs() if lab["id"] == released.remote_id)
    later = {
        "contentType": "application/pdf",
        "title": f"ClinikUI report {released.number} v{update.version.number + 2} (signed)",
        "data": "JVBERi0=",
    }
    sandbox.store.replace(
        "labs",
        "test",
        "org_sandbox",
        {**lab, "presentedForm": [later]},
        lag=0.0,
        request_id="test",
        timestamp="2026-11-24T07:00:00.000Z",
    )
    Submission.objects.filter(pk=update.pk).update(state=SubmissionState.PENDING)
    assert outbox.reconcile_after_restore() == 1
    drain(outbox.Worker(), until=lambda: Submission.objects.get(pk=update.pk).state == "parked")
    update.refresh_from_db()
    assert update.error_code == "SUPERSEDED"
    assert len(patches_of(sandbox, released)) == 1
    assert Alert.objects.filter(kind="release.superseded").exists()


def test_changed_attachments_are_part_of_the_changes(released, clinician):
    _amend(released, clinician)
    services.attach_pdf(
        report_id=released.pk,
        author=clinician,
        filename="ferritin.pdf",
        data=samples.save(samples.document()),
    )
    released.refresh_from_db()
    amendment = Amendment.objects.get()
    content = ReportContent.from_json(released.versions.get(number=released.head).content)
    changes = {c.field: c for c in amendments.changes_since_release(amendment, content)}
    assert "ferritin.pdf" in changes["attachments"].after


def test_amendments_are_left_out_of_batch_verification(released, clinician, supervisor):
    _amend(released, clinician, conclusion="Moderate anaemia.")
    sign(released, clinician)
    released.refresh_from_db()
    client = Client()
    client.force_login(supervisor)
    queue = client.get(reverse("reports:review_queue")).content.decode()
    assert f'id="batch-{released.pk}"' not in queue
    outcomes = workflow.verify_many(
        request=RequestFactory().post("/"),
        verifier=supervisor,
        password=PASSWORD,
        choices=[(released.pk, released.head)],
        token=uuid.uuid4(),
    )
    assert [o.verified for o in outcomes] == [False]
    assert "on its own page" in outcomes[0].message
