"""The terminology combobox in the system Chromium: keyboard, selection and announcements."""

from __future__ import annotations

import pytest
from playwright.sync_api import Route, expect

from terminology import loading
from tests.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_clinician_picks_a_report_code_with_the_keyboard(page, live_server, clinician):
    loading.load_starter_set()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, live_server.url, "clinician")
    page.get_by_role("link", name="Terminology", exact=True).click()
    combobox = page.get_by_role("combobox", name="Report code")

    combobox.press_sequentially("cbc", delay=30)
    listbox = page.locator("#report-code-listbox")
    expect(listbox).to_be_visible()
    expect(combobox).to_have_attribute("aria-expanded", "true")
    expect(listbox.get_by_role("option").first).to_contain_text("http://loinc.org#58410-2")
    expect(page.locator("[data-combobox-status]").first).to_have_text(
        f"{listbox.get_by_role('option').count()} results"
    )
    combobox.press("ArrowDown")
    expect(combobox).to_have_attribute("aria-activedescendant", "report-code-listbox-option-0")
    expect(listbox.get_by_role("option").first).to_have_attribute("aria-selected", "true")
    combobox.press("Enter")

    expect(combobox).to_have_value("CBC panel - Blood by Automated count")
    expect(page.locator("#report-code-code")).to_have_value("58410-2")
    expect(listbox).to_be_hidden()
    expect(combobox).to_have_attribute("aria-expanded", "false")
    assert errors == [], errors


def test_escape_closes_the_suggestions_and_no_results_are_announced(page, live_server, clinician):
    loading.load_starter_set()
    sign_in(page, live_server.url, "clinician")
    page.goto(f"{live_server.url}/terminology/")
    combobox = page.get_by_role("combobox", name="Conclusion code")
    status = page.locator("[data-combobox-status]").nth(1)

    combobox.press_sequentially("anem", delay=30)
    expect(page.locator("#conclusion-code-listbox")).to_be_visible()
    combobox.press("Escape")
    expect(page.locator("#conclusion-code-listbox")).to_be_hidden()
    expect(combobox).to_have_attribute("aria-expanded", "false")
    combobox.fill("zzqxv")

    expect(status).to_have_text("No results")
    expect(page.locator("#conclusion-code-listbox")).to_be_hidden()


def test_a_slow_older_response_never_replaces_a_newer_one(page, live_server, clinician):
    loading.load_starter_set()
    sign_in(page, live_server.url, "clinician")
    page.goto(f"{live_server.url}/terminology/")
    held: list[Route] = []
    aborted: list[str] = []
    page.on("requestfailed", lambda request: aborted.append(request.url))

    def hold_the_first(route):
        if "q=anem" in route.request.url and not held:
            held.append(route)  # answered only after the newer request
        else:
            route.continue_()

    page.route("**/terminology/suggestions*", hold_the_first)
    combobox = page.get_by_role("combobox", name="Conclusion code")
    with page.expect_request("**/terminology/suggestions*q=anem*"):
        combobox.fill("anem")
    combobox.fill("pneumonia")
    listbox = page.locator("#conclusion-code-listbox")
    expect(listbox.get_by_role("option").first).to_contain_text("Pneumonia")
    held[0].continue_()  # hx-sync="this:replace" has already aborted it

    expect(listbox.get_by_role("option").first).to_contain_text("Pneumonia")
    expect(listbox).not_to_contain_text("Anemia")
    assert any("q=anem" in url for url in aborted)
