"""What a person does, in the system Chromium driven by Playwright."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_clinician_signs_in_and_finds_a_seeded_patient(page, live_server, clinician):
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    sign_in(page, live_server.url, "clinician")
    expect(page.locator("#signed-in-role")).to_have_text("Clinician")
    page.get_by_label("Name", exact=True).fill("okaf")
    results = page.locator("#patient-table")
    expect(results).to_contain_text("Okafor")
    page.get_by_role("link", name="Amara N. Okafor").click()

    expect(page.locator("#patient-banner")).to_contain_text("Amara N. Okafor")
    expect(page.locator("#observation-table tbody tr").first).to_be_visible()
    assert "okaf" not in page.url.lower()
    assert errors == [], errors


def test_signing_out_returns_to_the_login_page(page, live_server, supervisor):
    sign_in(page, live_server.url, "supervisor")
    expect(page.locator("#signed-in-role")).to_have_text("Supervisor")

    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
