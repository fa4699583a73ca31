"""Review and amendment as people do them, in Chromium: a supervisor verifies and the report
reaches the sandbox as final; an author who is also a supervisor cannot verify their own; an
amendment, with its diff, ends in a PATCH with status amended, its reason in the timeline and
in the signed PDF; a preliminary release completed as final, unchanged, ends in a PATCH with
status final."""

from __future__ import annotations

import io
from pathlib import Path

import pypdf
import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from reports import outbox
from reports.models import Report, ReportState, Submission, SubmissionState
from reports.roles import SUPERVISOR
from terminology import loading
from tests.browser import sign_in
from tests.conftest import PASSWORD, make_user
from tests.releasing import (
    complete_content,
    draft,
    drain,
    fast_release_settings,
    patches_of,
    remote_reports_of,
    sign,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def sandbox(settings, api_over_socket):
    fast_release_settings(settings)
    settings.CLINIKUI_REVIEW_REQUIRED = True
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = True
    loading.load_starter_set()
    return api_over_socket.sandbox


def _send_everything() -> None:
    drain(
        outbox.Worker(name="browser-review"),
        until=lambda: (
            not Submission.objects.waiting().exists()
            and not Submission.objects.filter(state=SubmissionState.SENT, read_back="").exists()
        ),
    )


def _sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Username")).to_be_visible()


def _verify_in_browser(page: Page, base: str, report: Report) -> None:
    page.goto(f"{base}{reverse('reports:review_queue')}")
    page.get_by_role("link", name=report.number).click()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Verify and release").click()
    expect(page.locator("#report-state")).to_have_text("Being released")


def test_a_supervisor_verifies_and_the_report_reaches_clinikapi_as_final(
    page, live_server, clinician, supervisor, sandbox
):
    report = draft(clinician, complete_content(status="final"))
    sign(report, clinician)
    sign_in(page, live_server.url, "supervisor")
    expect(page.locator("#review-waiting")).to_have_text("1")
    _verify_in_browser(page, live_server.url, report)
    _send_everything()
    (lab,) = remote_reports_of(sandbox, report)
    assert lab["status"] == "final"
    page.reload()
    expect(page.locator("#report-state")).to_have_text("Released")
    expect(page.locator("#timeline")).to_contain_text("Signed: verified")
    # The author is told.
    _sign_out(page)
    sign_in(page, live_server.url, "clinician")
    expect(page.locator("#unread-notifications")).to_contain_text("1")
    page.locator("#notifications-link").click()
    expect(page.locator("#notification-list")).to_contain_text("Verified by a supervisor")


def test_an_author_who_is_a_supervisor_cannot_verify_their_own_report(page, live_server, sandbox):
    both = make_user("dual", "Clinician")
    both.groups.add(*both.groups.model.objects.filter(name=SUPERVISOR))
    report = draft(both, complete_content(status="final"))
    sign(report, both)
    sign_in(page, live_server.url, "dual")
    page.goto(f"{live_server.url}{reverse('reports:review', args=[report.pk])}")
    expect(page.locator("#own-report")).to_be_visible()
    expect(page.get_by_role("button", name="Verify and release")).to_have_count(0)
    # A verify POST forged from the page itself (its own CSRF token) is refused by the server.
    status = page.evaluate(
        """async ([url, version, password]) => {
            const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
            const body = new URLSearchParams({
                csrfmiddlewaretoken: token, "verify-password": password,
                "verify-version": version, "verify-token": crypto.randomUUID(),
            });
            const response = await fetch(url, {method: "POST", body});
            return [response.status, await response.text()];
        }""",
        [reverse("reports:review", args=[report.pk]), str(report.head), PASSWORD],
    )
    assert status[0] == 422 and "another supervisor has to verify it" in status[1]
    report.refresh_from_db()
    assert report.state == ReportState.AWAITING_REVIEW
    page.goto(f"{live_server.url}{reverse('reports:review_queue')}")
    expect(page.locator(f"#batch-{report.pk}")).to_have_count(0)


def test_an_amendment_with_its_diff_is_verified_and_patched_as_amended(
    page, live_server, clinician, supervisor, sandbox
):
    report = draft(clinician, complete_content(status="preliminary"))
    sign(report, clinician)
    _send_everything()
    report.refresh_from_db()
    assert report.state == ReportState.RELEASED

    sign_in(page, live_server.url, "clinician")
    page.goto(f"{live_server.url}{reverse('reports:release', args=[report.pk])}")
    page.get_by_role("link", name="Amend, correct or append…").click()
    page.get_by_label("Amended: the report's content changes").check()
    page.get_by_label("Reason").select_option("interpretation")
    page.get_by_label("Explain the change").fill("Repeat haemoglobin 10.9 g/dL.")
    page.get_by_role("button", name="Start the change").click()

    expect(page.locator("#amendment-banner")).to_contain_text("Repeat haemoglobin 10.9 g/dL.")
    expect(page.get_by_label("Status")).to_be_disabled()
    expect(page.locator("#report-code-locked")).to_contain_text("58410-2")
    conclusion = page.get_by_label("Conclusion", exact=True)
    conclusion.fill("Moderate normocytic anaemia.")
    expect(page.locator("#autosave-status")).to_contain_text("saved automatically", timeout=10_000)
    expect(page.locator("#amendment-changes del")).to_contain_text("Mild")
    expect(page.locator("#amendment-changes ins")).to_contain_text("Moderate")
    expect(page.locator("#preview-json")).to_contain_text('"status": "amended"')

    page.get_by_role("link", name="Review and sign…").click()
    expect(page.locator("#amendment-reason")).to_contain_text("Interpretation")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Sign and send for review").click()
    expect(page.locator("#report-state")).to_have_text("Awaiting review")

    _sign_out(page)
    sign_in(page, live_server.url, "supervisor")
    page.goto(f"{live_server.url}{reverse('reports:review', args=[report.pk])}")
    expect(page.locator("#amendment-summary del")).to_contain_text("Mild")
    expect(page.locator("#amendment-summary")).to_contain_text("Repeat haemoglobin 10.9 g/dL.")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Verify and release").click()
    _send_everything()

    patches = patches_of(sandbox, report)
    assert [body["status"] for body in patches] == ["amended"]
    assert patches[0]["conclusion"] == "Moderate normocytic anaemia."

    page.reload()
    expect(page.locator("#report-state")).to_have_text("Released")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Amendment started (amended) from released version 2")
    expect(timeline).to_contain_text("Interpretation: Repeat haemoglobin 10.9 g/dL.")
    expect(timeline).to_contain_text("Update released to ClinikAPI (PATCH)")
    # The PDF of the amendment, as downloaded from the page, names the change and the reason.
    update = Submission.objects.get(report=report, operation=Submission.Operation.UPDATE)
    with page.expect_download() as download:
        page.locator(f"#submission-{update.pk} a", has_text="Signed report (PDF)").click()
    reader = pypdf.PdfReader(io.BytesIO(Path(download.value.path()).read_bytes()))
    text = " ".join(" ".join(p.extract_text().split()) for p in reader.pages)
    assert "Changes since version 2" in text
    assert "Interpretation: Repeat haemoglobin 10.9 g/dL." in text
    # The original release stays readable beside it.
    original = Submission.objects.get(report=report, operation=Submission.Operation.CREATE)
    expect(page.locator(f"#submission-{original.pk} .released-content")).to_contain_text(
        "Mild normocytic anaemia."
    )


def test_a_preliminary_release_is_completed_as_final_unchanged_and_patched_as_final(
    page, live_server, clinician, supervisor, sandbox
):
    report = draft(clinician, complete_content(status="preliminary"))
    sign(report, clinician)
    _send_everything()
    report.refresh_from_db()
    assert report.state == ReportState.RELEASED

    sign_in(page, live_server.url, "clinician")
    page.goto(f"{live_server.url}{reverse('reports:release', args=[report.pk])}")
    page.get_by_role("link", name="Complete as final…").click()
    expect(page.locator("#released-status")).to_have_text("preliminary")
    page.get_by_label("What completes the report").fill("All results in.")
    page.get_by_role("button", name="Start the final report").click()

    # The composer: status final and locked with the rest; nothing else has to change.
    expect(page.locator("#amendment-banner")).to_contain_text("Completion as final")
    expect(page.locator("#amendment-banner")).to_contain_text("All results in.")
    expect(page.get_by_label("Status")).to_be_disabled()
    expect(page.locator("#preview-json")).to_contain_text('"status": "final"')
    page.get_by_role("link", name="Review and sign…").click()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Sign and send for review").click()
    expect(page.locator("#report-state")).to_have_text("Awaiting review")

    _sign_out(page)
    sign_in(page, live_server.url, "supervisor")
    page.goto(f"{live_server.url}{reverse('reports:review_queue')}")
    # Read on its own page, never ticked in a batch.
    expect(page.locator(f"#batch-{report.pk}")).to_have_count(0)
    _verify_in_browser(page, live_server.url, report)
    _send_everything()

    patches = patches_of(sandbox, report)
    assert [body["status"] for body in patches] == ["final"]
    (lab,) = remote_reports_of(sandbox, report)
    assert lab["status"] == "final"
    page.reload()
    expect(page.locator("#report-state")).to_have_text("Released")
    expect(page.locator("#timeline")).to_contain_text("completes preliminary version 2")
    expect(page.locator("#complete-link")).to_have_count(0)
