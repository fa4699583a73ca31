"""Completing an early release as final (DESIGN "lifecycle", CONTRACT §11.4): a report released
as registered, partial or preliminary gets a new version with status `final`, signed "authored",
reviewed like any final report, and sent as one PATCH to the same ClinikAPI report."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import reverse

from reports import amendments, outbox, services, signing, workflow
from reports.models import (
    Amendment,
    AuditEvent,
    Report,
    ReportState,
    Signature,
    Submission,
)
from reports.payload import ReportContent
from reports.release_forms import AmendForm
from terminology import loading
from tests.conftest import PASSWORD, make_user
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


def _release(author: User, status: str, supervisor: User | None = None) -> Report:
    """A report released with `status` (a final one verified by `supervisor` first)."""
    report = draft(author, complete_content(status=status))
    sign(report, author)
    if supervisor is not None:
        report.refresh_from_db()
        _verify(report, supervisor)
    drain(outbox.Worker(), until=lambda: settled(report))
    report.refresh_from_db()
    assert report.state == ReportState.RELEASED and report.remote_id
    return report


@pytest.fixture
def released(clinician, sandbox) -> Report:
    return _release(clinician, "preliminary")


def _complete(report: Report, user: User, **changes: Any) -> ReportContent:
    amendments.start_completion(report_id=report.pk, user=user, explanation="All results in.")
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


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _release_page(report: Report, user: User) -> str:
    return _client(user).get(reverse("reports:release", args=[report.pk])).content.decode()


@pytest.mark.parametrize("status", ["registered", "partial", "preliminary"])
def test_an_early_release_offers_its_author_completion_beside_amending(
    status, clinician, supervisor, sandbox
):
    report = _release(clinician, status)

    page = _release_page(report, clinician)
    form = _client(clinician).get(reverse("reports:complete", args=[report.pk]))

    assert 'id="complete-link"' in page and 'id="amend-link"' in page
    assert form.status_code == 200
    assert f'id="released-status">{status}<' in form.content.decode()
    # A supervisor reads the report but does not complete it.
    assert 'id="complete-link"' not in _release_page(report, supervisor)


def test_completion_starts_a_final_version_from_the_released_one(released, clinician):
    released_head = released.head
    client = _client(clinician)
    url = reverse("reports:complete", args=[released.pk])

    response = client.post(url, {"explanation": "All results in."})
    again = client.post(url, {"explanation": "All results in."})  # a double click

    assert response.status_code == 303
    assert response["Location"] == reverse("reports:edit", args=[released.pk])
    assert again.status_code == 303
    amendment = Amendment.objects.get(report=released)
    assert (amendment.kind, amendment.reason, amendment.explanation) == (
        "completion",
        "results_complete",
        "All results in.",
    )
    released.refresh_from_db()
    assert released.state == ReportState.DRAFT and released.head == released_head + 1
    head = released.versions.get(number=released.head)
    assert head.kind == "completion"
    released_content = released.versions.get(number=released_head).content
    assert head.content == {**released_content, "status": "final"}
    event = AuditEvent.objects.filter(report=released, action="amendment.started").get()
    assert event.details == {
        "kind": "completion",
        "reason": "results_complete",
        "released_version": released_head,
        "released_status": "preliminary",
    }
    edit = client.get(reverse("reports:edit", args=[released.pk])).content.decode()
    assert "Completion as final</strong> of released preliminary version" in edit


def test_only_the_author_may_complete(released, supervisor):
    other = make_user("other-clinician", "Clinician")
    url = reverse("reports:complete", args=[released.pk])

    assert _client(other).get(url).status_code == 404
    assert _client(other).post(url, {"explanation": "x"}).status_code == 404
    assert _client(supervisor).post(url, {"explanation": "x"}).status_code == 403
    with pytest.raises(amendments.AmendmentRefused, match="Only the author"):
        amendments.start_completion(report_id=released.pk, user=other, explanation="x")

    assert not Amendment.objects.exists()


def test_a_final_release_is_amended_not_completed(clinician, supervisor, sandbox):
    report = _release(clinician, "final", supervisor)
    client = _client(clinician)
    url = reverse("reports:complete", args=[report.pk])

    page = _release_page(report, clinician)
    shown = client.get(url)
    forged = client.post(url, {"explanation": "All results in."})

    assert 'id="complete-link"' not in page and 'id="amend-link"' in page
    assert shown.status_code == 302
    assert shown["Location"] == reverse("reports:release", args=[report.pk])
    assert forged.status_code == 422
    assert "released as final; only a registered, partial or preliminary" in forged.content.decode()
    assert not Amendment.objects.exists()
    report.refresh_from_db()
    assert report.state == ReportState.RELEASED


def test_an_amended_early_release_is_not_completed(released, clinician, settings):
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = False
    amendments.start_amendment(
        report_id=released.pk,
        user=clinician,
        kind="corrected",
        reason="report_defect",
        explanation="Typo.",
    )
    released.refresh_from_db()
    head = ReportContent.from_json(released.versions.get(number=released.head).content)
    services.save_draft(
        report_id=released.pk,
        author=clinician,
        base_version=released.head,
        content=dataclasses.replace(head, conclusion="Mild normocytic anaemia, corrected."),
    )
    released.refresh_from_db()
    sign(released, clinician)
    drain(outbox.Worker(), until=lambda: settled(released))

    with pytest.raises(amendments.AmendmentRefused, match="released as corrected"):
        amendments.start_completion(report_id=released.pk, user=clinician, explanation="x")
    assert 'id="complete-link"' not in _release_page(released, clinician)


def test_a_forged_post_cannot_change_the_locked_fields_or_the_status(
    released, clinician, clinician_client
):
    loading.load_starter_set()
    _complete(released, clinician)
    head = released.versions.get(number=released.head)
    more_results = complete_content(results=4).result_ids

    response = clinician_client.post(
        reverse("reports:edit", args=[released.pk]),
        {
            "base_version": head.number,
            "report_code": "24323-8",
            "category": "RAD",
            "status": "preliminary",
            "encounter": "enc_other",
            "conclusion": "Mild normocytic anaemia; iron studies complete.",
            "results": list(more_results),
            "conclusion_codes": ["271737000"],
        },
    )

    assert response.status_code == 302, response.context["form"].errors
    released.refresh_from_db()
    saved = ReportContent.from_json(released.versions.get(number=released.head).content)
    assert (saved.code.code if saved.code else "", saved.category, saved.status) == (
        "58410-2",
        "LAB",
        "final",
    )
    assert saved.encounter_id == "" and saved.result_ids == more_results
    assert saved.conclusion == "Mild normocytic anaemia; iron studies complete."


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"status": "preliminary"}, "The status must be final"),
        ({"status": "amended"}, "The status must be final"),
        ({"category": "PAT"}, "Category cannot change"),
        ({"specimen_ids": ("spec_other",)}, "Specimens cannot change"),
    ],
)
def test_signing_refuses_a_completion_that_changed_a_locked_field(
    released, clinician, changes, refusal
):
    # Whatever path changed it (here the service layer directly), signing refuses it.
    _complete(released, clinician, **changes)

    with pytest.raises(workflow.SigningRefused, match=refusal):
        sign(released, clinician)


def test_an_unchanged_completion_is_signed_as_authored_and_goes_to_review(
    released, clinician, settings
):
    # Reviewed as a final report is, whatever the setting for amendments says.
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = False
    _complete(released, clinician)
    page = _client(clinician).get(reverse("reports:sign", args=[released.pk])).content.decode()

    result = sign(released, clinician)

    assert "Meaning of this signature: <strong>Authored</strong>" in page
    assert "completing released preliminary version 2" in page
    assert result.signature.meaning == "authored" and result.submission is None
    released.refresh_from_db()
    assert released.state == ReportState.AWAITING_REVIEW


def test_without_review_a_completion_is_sent_when_signed(released, clinician, settings, sandbox):
    settings.CLINIKUI_REVIEW_REQUIRED = False
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = True
    _complete(released, clinician)

    assert sign(released, clinician).submission is not None
    drain(outbox.Worker(), until=lambda: settled(released))
    assert [patch["status"] for patch in patches_of(sandbox, released)] == ["final"]


def test_a_verified_completion_is_one_patch_and_the_report_is_final(
    released, clinician, supervisor, sandbox
):
    original = released.versions.get(number=released.head)
    original_signature = Signature.objects.get(report=released)
    more_results = complete_content(results=4).result_ids
    _complete(released, clinician, result_ids=more_results, conclusion="Iron deficiency anaemia.")
    sign(released, clinician)
    released.refresh_from_db()
    reviewer = _client(supervisor)
    queue = reviewer.get(reverse("reports:review_queue")).content.decode()
    review = reviewer.get(reverse("reports:review", args=[released.pk])).content.decode()
    (batch,) = workflow.verify_many(
        request=RequestFactory().post("/"),
        verifier=supervisor,
        password=PASSWORD,
        choices=[(released.pk, released.head)],
        token=uuid.uuid4(),
    )

    _verify(released, supervisor)
    drain(outbox.Worker(), until=lambda: settled(released))

    # The queue and the review page say what it is; it is verified on its own page.
    assert "completes released v2" in queue and f'id="batch-{released.pk}"' not in queue
    assert not batch.verified and "verified on its own page" in batch.message
    assert "Final report completing released preliminary version 2" in review
    assert "<del>normocytic</del><ins>deficiency</ins>" in review.replace("\n", "")
    assert "Results complete" in review and "All results in." in review
    (patch,) = patches_of(sandbox, released)
    assert patch["status"] == "final"
    assert patch["resultIds"] == list(more_results)
    assert patch["conclusion"] == "Iron deficiency anaemia."
    assert [c["code"] for c in patch["conclusionCodes"]] == ["271737000"]
    assert not {"patientId", "code", "category", "encounterId", "specimenIds"} & set(patch)
    assert [item["title"] for item in patch["presentedForm"]] == [
        f"ClinikUI report {released.number} v{released.head} (signed)",
        f"ClinikUI report {released.number} v{original.number} (signed)",
    ]
    labs = [lab for lab in sandbox.store.labs() if released.number in str(lab)]
    assert [(lab["id"], lab["status"]) for lab in labs] == [(released.remote_id, "final")]
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED
    latest = amendments.released_submission(released)
    assert latest is not None and latest.version.content["status"] == "final"
    update = Submission.objects.get(report=released, operation=Submission.Operation.UPDATE)
    assert update.read_back == "match"
    assert Amendment.objects.get(report=released).released_at is not None
    assert list(
        Signature.objects.filter(version=update.version).values_list("meaning", flat=True)
    ) == ["authored", "verified"]
    original_signature.refresh_from_db()
    assert signing.verify_signature(original_signature).ok
    # The signed PDF and the timeline say what happened.
    assert update.pdf is not None
    text = pdf_text(bytes(update.pdf))
    assert "Status: Final" in text and "Completes preliminary version 2" in text
    assert "Results complete: All results in." in text and "Iron deficiency anaemia." in text
    page = _release_page(released, clinician)
    timeline = page[page.index('id="timeline"') :]
    assert "Completion as final started: completes preliminary version 2" in timeline
    assert "Final report released to ClinikAPI (PATCH): completes preliminary version 2" in (
        timeline
    )
    # Final now: not completed again, but still amendable.
    assert 'id="complete-link"' not in page and 'id="amend-link"' in page
    with pytest.raises(amendments.AmendmentRefused, match="released as final"):
        amendments.start_completion(report_id=released.pk, user=clinician, explanation="x")


def test_an_unchanged_completion_pdf_says_it_confirms_the_release(
    released, clinician, supervisor, sandbox
):
    _complete(released, clinician)
    sign(released, clinician)
    released.refresh_from_db()

    _verify(released, supervisor)
    drain(outbox.Worker(), until=lambda: settled(released))

    (patch,) = patches_of(sandbox, released)
    assert patch["status"] == "final" and patch["conclusion"] == "Mild normocytic anaemia."
    update = Submission.objects.get(report=released, operation=Submission.Operation.UPDATE)
    assert update.pdf is not None
    text = pdf_text(bytes(update.pdf))
    assert "The preliminary report is confirmed as final without changes." in text


def test_a_discarded_completion_leaves_the_report_as_released(released, clinician, sandbox):
    released_head = released.head
    _complete(released, clinician, conclusion="Half written.")
    client = _client(clinician)

    response = client.post(reverse("reports:amendment_discard", args=[released.pk]), follow=True)

    assert "Completion discarded. The report is as it was released." in response.content.decode()
    released.refresh_from_db()
    assert released.state == ReportState.RELEASED and released.head == released_head
    assert Amendment.objects.get().discarded_at is not None
    event = AuditEvent.objects.filter(report=released, action="amendment.discarded").get()
    assert event.details == {"kind": "completion"}
    page = _release_page(released, clinician)
    assert 'id="complete-link"' in page and "Completion discarded" in page
    # A new completion starts from the released version, not from the discarded text.
    assert _complete(released, clinician).conclusion == "Mild normocytic anaemia."
    assert patches_of(sandbox, released) == []


def test_results_complete_is_a_completions_reason_alone(released, clinician):
    form = AmendForm({"kind": "amended", "reason": "results_complete", "explanation": "x"})

    assert list(form.errors) == ["reason"]
    assert 'value="results_complete"' not in str(form["reason"])
    with pytest.raises(amendments.AmendmentRefused, match="Complete the report as final"):
        amendments.start_amendment(
            report_id=released.pk,
            user=clinician,
            kind="amended",
            reason="results_complete",
            explanation="x",
        )
