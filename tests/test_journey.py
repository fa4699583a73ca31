"""The whole product in one run, as its users use it (issue "Prove it as users would").

In Chromium, against the sandbox served over a socket and the real release worker running as
its own process (`manage.py release_worker`) on the test database — PostgreSQL in the suite's
second pass: a clinician composes a final CBC report and signs it; a supervisor verifies it;
it reaches ClinikAPI as `final`; the clinician amends it; the supervisor verifies the
amendment; the `PATCH` arrives with status `amended`.

Each step is photographed. The pictures go to a temporary folder, or to the folder named by
CLINIKUI_SCREENSHOTS (docs/images holds the ones the user guide shows:
`CLINIKUI_SCREENSHOTS=docs/images bin/test tests/test_journey.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from reports.models import Report, ReportState, Submission
from reports.sandbox.seed import FIXED_PATIENT_ID
from terminology import loading
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.releasing import database_url
from tests.test_composer_browser import pick

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker(api_over_socket, settings) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py release_worker` as its own process, as deployed, until the test ends."""
    settings.CLINIKUI_REVIEW_REQUIRED = True
    settings.CLINIKUI_AMENDMENTS_NEED_REVIEW = True
    loading.load_starter_set()
    env = {
        **os.environ,
        "CLINIKUI_ENVIRONMENT": "test",
        "DATABASE_URL": database_url(),
        "CLINIKAPI_BASE_URL": api_over_socket.url,
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "release_worker", "--poll", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    output = process.communicate(timeout=30)[0].decode()
    assert "Traceback" not in output, output


@pytest.fixture
def photograph(tmp_path: Path) -> Callable[[Page, str], None]:
    folder = Path(os.environ.get("CLINIKUI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    taken: list[str] = []

    def take(page: Page, name: str) -> None:
        path = folder / f"{len(taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one
        taken.append(name)

    return take


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"the worker did not {what} in {timeout} s"
        time.sleep(0.1)


def _switch_user(page: Page, base: str, username: str) -> None:
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, base, username)


def _verify(
    page: Page, base: str, report: Report, photograph: Callable[[Page, str], None], name: str
) -> None:
    page.goto(f"{base}{reverse('reports:review_queue')}")
    expect(page.locator("#review-table")).to_contain_text(report.number)
    photograph(page, f"{name}-queue")
    page.get_by_role("link", name=report.number).click()
    photograph(page, f"{name}-review")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Verify and release").click()
    expect(page.locator("#report-state")).to_have_text("Being released")


def test_compose_sign_verify_release_amend_verify_patch(
    page, live_server, clinician, supervisor, api_over_socket, worker, photograph
):
    sandbox = api_over_socket.sandbox
    base = live_server.url
    page.set_viewport_size({"width": 1280, "height": 900})

    # A clinician finds the patient and composes the report.
    sign_in(page, base, "clinician")
    page.goto(f"{base}{reverse('reports:new')}")
    page.get_by_label("Name", exact=True).fill("okafor")
    photograph(page, "patient-search")
    page.get_by_role("button", name="Start report for Amara N. Okafor").click()
    expect(page.locator("#report-form")).to_be_visible()
    page.get_by_label("Encounter").focus()
    page.keyboard.press("ArrowDown")
    pick(page, "Report code", "cbc")
    page.get_by_label("Status").select_option("final")
    page.get_by_label("Effective date/time").fill("2026-11-20T07:40")
    results = page.locator("#results-table input[type=checkbox]")
    results.nth(0).check()
    results.nth(1).check()
    pick(page, "Performer", "lop")
    page.get_by_label("Conclusion", exact=True).fill("Mild normocytic anaemia.")
    pick(page, "Conclusion codes", "anemia")
    expect(page.locator("#autosave-status")).to_contain_text("saved automatically", timeout=10_000)
    expect(page.locator("#preview-ready")).to_be_visible()
    photograph(page, "composer")
    report = Report.objects.get(patient_id=FIXED_PATIENT_ID)

    # ... reviews exactly what will be sent and signs.
    page.get_by_role("link", name="Review and sign…").click()
    expect(page.locator("#preview-json")).to_contain_text('"status": "final"')
    page.get_by_label("Your password").fill(PASSWORD)
    photograph(page, "sign")
    page.get_by_role("button", name="Sign and send for review").click()
    expect(page.locator("#report-state")).to_have_text("Awaiting review")

    # A supervisor verifies it; the worker process releases it as final.
    _switch_user(page, base, "supervisor")
    _verify(page, base, report, photograph, "verify")
    _wait_for(lambda: Report.objects.get(pk=report.pk).state == ReportState.RELEASED, "release")
    report.refresh_from_db()
    (lab,) = [lab for lab in sandbox.store.labs() if lab["id"] == report.remote_id]
    assert lab["status"] == "final" and lab["conclusion"] == "Mild normocytic anaemia."
    _wait_for(lambda: Submission.objects.get(report=report).read_back == "match", "read back")
    page.reload()
    expect(page.locator("#report-state")).to_have_text("Released")
    photograph(page, "released")

    # The clinician amends it.
    _switch_user(page, base, "clinician")
    expect(page.locator("#unread-notifications")).to_contain_text("1")
    page.goto(f"{base}{reverse('reports:release', args=[report.pk])}")
    page.get_by_role("link", name="Amend, correct or append…").click()
    page.get_by_label("Amended: the report's content changes").check()
    page.get_by_label("Reason").select_option("interpretation")
    page.get_by_label("Explain the change").fill("Repeat haemoglobin 10.9 g/dL.")
    photograph(page, "amend")
    page.get_by_role("button", name="Start the change").click()
    page.get_by_label("Conclusion", exact=True).fill(
        "Moderate normocytic anaemia on repeat testing; iron studies requested."
    )
    expect(page.locator("#autosave-status")).to_contain_text("saved automatically", timeout=10_000)
    expect(page.locator("#amendment-changes ins").first).to_contain_text("Moderate")
    photograph(page, "amendment-composer")
    page.get_by_role("link", name="Review and sign…").click()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Sign and send for review").click()
    expect(page.locator("#report-state")).to_have_text("Awaiting review")

    # The supervisor verifies the amendment; the PATCH arrives.
    _switch_user(page, base, "supervisor")
    _verify(page, base, report, photograph, "verify-amendment")
    _wait_for(
        lambda: Submission.objects.filter(
            report=report, operation=Submission.Operation.UPDATE, read_back="match"
        ).exists(),
        "send the amendment",
    )
    patches = [
        record.body
        for record in sandbox.store.requests
        if record.method == "PATCH" and record.path == f"/v1/labs/{report.remote_id}"
    ]
    assert [body["status"] for body in patches] == ["amended"]
    assert len([lab for lab in sandbox.store.labs() if report.number in str(lab)]) == 1
    page.reload()
    expect(page.locator("#timeline")).to_contain_text("Update released to ClinikAPI (PATCH)")
    photograph(page, "timeline")
