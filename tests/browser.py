"""Helpers for the browser tests; the `browser` and `page` fixtures live in conftest.py, so that
one Chromium serves the whole session."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.conftest import PASSWORD


def sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
