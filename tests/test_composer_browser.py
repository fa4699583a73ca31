"""The composer in the system Chromium, against the live server and the sandbox over a socket."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.sessions.models import Session
from playwright.sync_api import Page, expect

from reports.models import Report, VersionKind
from reports.sandbox.seed import FIXED_PATIENT_ID
from terminology import loading
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.pdfs import samples

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _terminology_and_api(api_over_socket) -> None:
    loading.load_starter_set()


def start_report(page: Page, base_url: str) -> None:
    sign_in(page, base_url, "clinician")
    page.goto(f"{base_url}/reports/new/")
    page.get_by_label("Name", exact=True).fill("okafor")
    page.get_by_role("button", name="Start report for Amara N. Okafor").click()
    expect(page.locator("#report-form")).to_be_visible()


def pick(page: Page, combobox: str, text: str) -> None:
    box = page.get_by_role("combobox", name=combobox)
    box.focus()
    box.press_sequentially(text, delay=20)
    expect(
        page.locator(f"#{box.get_attribute('aria-controls')} [role=option]").first
    ).to_be_visible()
    box.press("ArrowDown")
    box.press("Enter")


def test_a_clinician_fills_every_field_by_keyboard_and_finds_it_after_reload(
    page, live_server, clinician
):
    start_report(page, live_server.url)

    page.get_by_label("Encounter").focus()
    page.keyboard.press("ArrowDown")
    pick(page, "Report code", "cbc")
    page.get_by_label("Category").select_option("LAB")
    page.get_by_label("Status").select_option("preliminary")
    page.get_by_label("Effective date/time").fill("2026-03-02T07:40")
    first_result = page.locator("#results-table input[type=checkbox]").first
    first_result.focus()
    page.keyboard.press("Space")
    page.locator("#specimens-field input[type=checkbox]").first.check()
    pick(page, "Performer", "lop")
    pick(page, "Results interpreter", "dub")
    page.get_by_label("Conclusion", exact=True).fill("Mild normocytic anaemia.")
    pick(page, "Conclusion codes", "anemia")
    expect(page.locator("#conclusion-codes-chosen li")).to_have_count(1)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Saved as version")
    page.reload()

    expect(page.get_by_role("combobox", name="Report code")).to_have_value(
        "CBC panel - Blood by Automated count"
    )
    expect(page.get_by_label("Status")).to_have_value("preliminary")
    expect(page.get_by_label("Effective date/time")).to_have_value("2026-03-02T07:40")
    expect(page.get_by_label("Conclusion", exact=True)).to_have_value("Mild normocytic anaemia.")
    expect(page.locator("#conclusion-codes-chosen")).to_contain_text("Anemia")
    expect(page.locator("#results-table input:checked")).to_have_count(1)
    expect(page.locator("#preview-ready")).to_be_visible()
    expect(page.locator("#preview-json")).to_contain_text('"status": "preliminary"')


def test_two_edits_make_three_versions_with_a_correct_diff(page, live_server, clinician):
    start_report(page, live_server.url)
    conclusion = page.get_by_label("Conclusion", exact=True)

    conclusion.fill("Iron low.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("version 2")
    page.get_by_label("Conclusion", exact=True).fill("Ferritin low.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("version 3")
    page.get_by_role("link", name=re.compile("History")).click()

    expect(page.locator("#versions-table tbody tr")).to_have_count(3)
    expect(page.locator("#changes-table del")).to_have_text("Iron")
    expect(page.locator("#changes-table ins")).to_have_text("Ferritin")


def test_typing_is_autosaved_without_pressing_save(page, live_server, clinician):
    start_report(page, live_server.url)

    page.get_by_label("Conclusion", exact=True).press_sequentially("Autosaved words", delay=10)

    expect(page.locator("#autosave-status")).to_contain_text("saved automatically", timeout=10_000)
    report = Report.objects.get()
    assert report.versions.get(number=report.head).content["conclusion"] == "Autosaved words"


@pytest.fixture
def second_page(browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def test_two_tabs_editing_one_draft_lose_nothing(page, second_page, live_server, clinician):
    first, second = page, second_page
    start_report(first, live_server.url)
    url = first.url
    sign_in(second, live_server.url, "clinician")
    second.goto(url)

    first.get_by_label("Conclusion", exact=True).fill("Written in the first tab.")
    first.get_by_role("button", name="Save", exact=True).click()
    expect(first.locator("#messages")).to_contain_text("Saved as version 2")
    second.get_by_label("Conclusion", exact=True).fill("Written in the second tab.")
    second.get_by_role("button", name="Save", exact=True).click()

    expect(second.locator("#conflict-current")).to_have_text("Written in the first tab.")
    expect(second.locator("#conflict-kept")).to_have_text("Written in the second tab.")
    report = Report.objects.get(patient_id=FIXED_PATIENT_ID)
    texts = {v.content["conclusion"]: v.kind for v in report.versions.all()}
    assert texts["Written in the first tab."] == VersionKind.SAVED
    assert texts["Written in the second tab."] == VersionKind.CONFLICT
    second.get_by_role("button", name="Continue from your text").click()
    expect(second.get_by_label("Conclusion", exact=True)).to_have_value(
        "Written in the second tab."
    )


def test_an_expired_session_loses_no_text_and_saves_after_signing_in_again(
    page, live_server, clinician
):
    start_report(page, live_server.url)
    conclusion = page.get_by_label("Conclusion", exact=True)
    conclusion.press_sequentially("Before expiry.", delay=5)
    status = page.locator("#autosave-status")
    expect(status).to_contain_text("saved automatically", timeout=10_000)
    saved_before = status.inner_text()

    Session.objects.all().delete()  # the server ends the session, as 15 idle minutes would
    conclusion.press_sequentially(" After expiry.", delay=5)
    expect(page.locator("#session-expired")).to_be_visible(timeout=10_000)
    expect(conclusion).to_have_value("Before expiry. After expiry.")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in and save").click()

    expect(page.locator("#session-expired")).to_be_hidden()
    expect(status).not_to_have_text(saved_before, timeout=10_000)
    expect(status).to_contain_text("saved automatically")
    report = Report.objects.get()
    assert report.versions.get(number=report.head).content["conclusion"] == (
        "Before expiry. After expiry."
    )


def test_a_locked_account_is_told_so_when_signing_in_again_and_the_text_stays(
    page, live_server, clinician
):
    start_report(page, live_server.url)
    conclusion = page.get_by_label("Conclusion", exact=True)
    conclusion.press_sequentially("Typed before expiry.", delay=5)
    expect(page.locator("#autosave-status")).to_contain_text("saved automatically", timeout=10_000)
    Session.objects.all().delete()
    conclusion.press_sequentially(" More.", delay=5)
    expect(page.locator("#session-expired")).to_be_visible(timeout=10_000)
    error = page.locator("[data-reauth-error]")
    for attempt in range(5):  # the fifth failure locks the account (django-axes)
        page.get_by_label("Password", exact=True).fill("not-the-password")
        page.get_by_role("button", name="Sign in and save").click()
        expect(error).to_contain_text("locked" if attempt == 4 else "not accepted")
        error.evaluate("node => node.textContent = ''")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in and save").click()
    expect(error).to_contain_text("locked for 15 minutes")  # even the right password, now
    expect(conclusion).to_have_value("Typed before expiry. More.")


def test_a_hostile_pdf_is_refused_with_a_clear_message_and_a_clean_one_attached(
    page, live_server, clinician, tmp_path
):
    hostile = samples.hostile_samples()["javascript in the open action"].data
    clean = samples.clean_samples()["single text page"][0].data
    (tmp_path / "results.pdf").write_bytes(hostile)
    (tmp_path / "cbc.pdf").write_bytes(clean)
    start_report(page, live_server.url)
    page.get_by_label("Conclusion", exact=True).fill("Typed before attaching.")

    page.get_by_label("Attach a PDF").set_input_files(tmp_path / "results.pdf")
    page.get_by_role("button", name="Attach", exact=True).click()
    expect(page.locator("#attachment-error")).to_contain_text("JavaScript")
    page.get_by_label("Attach a PDF").set_input_files(tmp_path / "cbc.pdf")
    page.get_by_role("button", name="Attach", exact=True).click()

    expect(page.locator("#attachments-table")).to_contain_text("cbc.pdf")
    expect(page.locator("#attachment-error")).to_have_count(0)
    expect(page.get_by_label("Conclusion", exact=True)).to_have_value("Typed before attaching.")
    expect(page.locator("#preview-json")).to_contain_text("characters of base64")
