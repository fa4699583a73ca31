"""Supervisor review: verify (never one's own report) and release as final, or return with a
comment the author reads (DESIGN "lifecycle", RELIABILITY AC-03, SIG-02)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.urls import reverse

from reports import outbox, workflow
from reports.models import AuditEvent, Report, ReportState, Signature, Submission
from reports.roles import SUPERVISOR
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
    settings.CLINIKUI_REVIEW_REQUIRED = True
    return api_over_socket.sandbox


@pytest.fixture
def awaiting(clinician, sandbox) -> Report:
    report = draft(clinician, complete_content(status="final"))
    sign(report, clinician)
    report.refresh_from_db()
    assert report.state == ReportState.AWAITING_REVIEW
    return report


def verify(
    report: Report, verifier: User, *, password: str = PASSWORD, token: uuid.UUID | None = None
) -> workflow.SignResult:
    return workflow.verify_report(
        request=RequestFactory().post("/"),
        report_id=report.pk,
        verifier=verifier,
        password=password,
        version_number=report.head,
        token=token or uuid.uuid4(),
    )


def test_a_supervisor_verifies_and_the_report_reaches_clinikapi_as_final(
    awaiting, supervisor, sandbox
):
    result = verify(awaiting, supervisor)
    assert result.signature.meaning == "verified"
    assert result.submission is not None
    drain(outbox.Worker(), until=lambda: Submission.objects.get().read_back != "")
    (lab,) = remote_reports_of(sandbox, awaiting)
    assert lab["status"] == "final"
    awaiting.refresh_from_db()
    assert awaiting.state == ReportState.RELEASED
    meanings = sorted(Signature.objects.values_list("meaning", flat=True))
    assert meanings == ["authored", "verified"]


def test_the_author_can_never_verify_their_own_report(clinician, sandbox, client):
    # A clinician who is also a supervisor writes a report, then tries to verify it.
    both = make_user("dual-role", "Clinician")
    both.groups.add(Group.objects.get(name=SUPERVISOR))
    report = draft(both, complete_content(status="final"))
    sign(report, both)
    with pytest.raises(workflow.ReviewRefused, match="another supervisor"):
        verify(report, both)
    assert not Signature.objects.filter(meaning="verified").exists()
    assert AuditEvent.objects.filter(action="review.refused").count() == 1
    # The page offers no verify form, and a forged POST is refused the same way.
    client.force_login(both)
    page = client.get(reverse("reports:review", args=[report.pk])).content.decode()
    assert 'id="own-report"' in page and 'id="verify-form"' not in page
    forged = client.post(
        reverse("reports:review", args=[report.pk]),
        {
            "verify-password": PASSWORD,
            "verify-version": report.head,
            "verify-token": str(uuid.uuid4()),
        },
    )
    assert forged.status_code == 422
    assert Report.objects.get(pk=report.pk).state == ReportState.AWAITING_REVIEW


def test_a_wrong_password_verifies_nothing(awaiting, supervisor):
    with pytest.raises(workflow.WrongPassword):
        verify(awaiting, supervisor, password="not-it")
    assert not Signature.objects.filter(meaning="verified").exists()


def test_two_verifiers_when_the_settings_ask_for_two(awaiting, supervisor, settings):
    settings.CLINIKUI_VERIFIERS_REQUIRED = 2
    assert verify(awaiting, supervisor).submission is None
    with pytest.raises(workflow.ReviewRefused, match="already"):
        verify(awaiting, supervisor)
    second = make_user("second-supervisor", "Supervisor")
    assert verify(awaiting, second).submission is not None


def test_a_returned_report_is_a_draft_again_with_the_comment_for_its_author(
    awaiting, supervisor, clinician_client
):
    client = Client()
    client.force_login(supervisor)
    queue = client.get(reverse("reports:review_queue")).content.decode()
    assert awaiting.number in queue
    empty = client.post(
        reverse("reports:review", args=[awaiting.pk]),
        {"return": "1", "return-version": awaiting.head, "return-comment": "  "},
    )
    assert empty.status_code == 422  # a return needs a reason
    returned = client.post(
        reverse("reports:review", args=[awaiting.pk]),
        {
            "return": "1",
            "return-version": awaiting.head,
            "return-comment": "Add the ferritin result.",
        },
    )
    assert returned.status_code == 303
    awaiting.refresh_from_db()
    assert awaiting.state == ReportState.DRAFT
    page = clinician_client.get(reverse("reports:edit", args=[awaiting.pk])).content.decode()
    assert "Add the ferritin result." in page
    # Signing the same version again is refused: the changes asked for come first.
    with pytest.raises(workflow.SigningRefused, match="came back"):
        sign(awaiting, awaiting.author)


def test_only_supervisors_reach_the_queue(clinician_client, awaiting):
    assert clinician_client.get(reverse("reports:review_queue")).status_code == 403
    assert clinician_client.get(reverse("reports:review", args=[awaiting.pk])).status_code == 403
