"""The effective date/time is entered and shown in the clinician's time zone and sent as UTC
`Z`; a page's times are read back in the zone that page showed them in."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from reports import services
from reports.models import Report
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.browser import sign_in

pytestmark = pytest.mark.django_db

NEW_YORK = "America/New_York"  # UTC−5 in November, UTC−4 from the second Sunday of March


@pytest.fixture
def report(clinician) -> Report:
    return services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)


def edit_url(report: Report) -> str:
    return reverse("reports:edit", args=[report.pk])


def in_zone(client, zone: str):
    client.cookies["clinikui_tz"] = zone
    return client


def sent_effective(client: Client, report: Report) -> Any:
    return client.get(reverse("reports:payload", args=[report.pk])).json().get("effectiveDateTime")


def test_the_page_says_which_zone_its_times_are_in_and_remembers_it_in_the_form(
    clinician_client, report
):
    page = in_zone(clinician_client, NEW_YORK).get(edit_url(report)).content.decode()

    assert '<div id="id_effective_helptext" class="form-text">America/New_York time;' in page
    assert re.search(r'<input type="hidden" name="time_zone" value="America/New_York"', page)


def test_a_new_york_time_is_sent_as_utc_and_shown_back_in_each_users_zone(clinician_client, report):
    in_zone(clinician_client, NEW_YORK).post(
        edit_url(report),
        {"base_version": 1, "time_zone": NEW_YORK, "effective": "2026-11-20T07:40"},
    )

    sent = sent_effective(clinician_client, report)
    new_york = clinician_client.get(edit_url(report)).content.decode()
    paris = in_zone(clinician_client, "Europe/Paris").get(edit_url(report)).content.decode()

    assert sent == "2026-11-20T12:40:00Z"
    assert 'name="effective" value="2026-11-20T07:40"' in new_york
    assert 'name="effective" value="2026-11-20T13:40"' in paris  # UTC+1 in November


def test_times_are_read_in_the_zone_the_page_showed_even_if_the_browser_moved_since(
    clinician_client, report
):
    # The page was shown in New York; meanwhile another tab reported Paris.
    in_zone(clinician_client, "Europe/Paris").post(
        edit_url(report),
        {"base_version": 1, "time_zone": NEW_YORK, "effective": "2026-11-20T07:40"},
    )

    assert sent_effective(clinician_client, report) == "2026-11-20T12:40:00Z"


@pytest.mark.parametrize("posted", ["", "Mars/Olympus_Mons", "../../../etc/localtime", "utc+2"])
def test_a_missing_or_unknown_form_zone_falls_back_to_the_browsers(
    clinician_client, report, posted
):
    in_zone(clinician_client, NEW_YORK).post(
        edit_url(report),
        {"base_version": 1, "time_zone": posted, "effective": "2026-11-20T07:40"},
    )

    assert sent_effective(clinician_client, report) == "2026-11-20T12:40:00Z"


def test_a_time_the_clock_skips_in_that_zone_is_refused_not_guessed(clinician_client, report):
    # 02:30 does not exist in New York on 8 March 2026: clocks go from 02:00 to 03:00.
    response = in_zone(clinician_client, NEW_YORK).post(
        edit_url(report),
        {"base_version": 1, "time_zone": NEW_YORK, "effective": "2026-03-08T02:30"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "interpreted in time zone America/New_York" in page
    assert re.search(r'<input type="datetime-local" name="effective"[^>]*aria-invalid="true"', page)
    assert report.versions.count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_browser_in_new_york_enters_local_time_and_utc_is_sent(
    browser, live_server, clinician, api_over_socket
):
    report = services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)
    context = browser.new_context(timezone_id=NEW_YORK)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, "clinician")
        page.goto(live_server.url + edit_url(report))
        effective = page.get_by_label("Effective date/time")
        expect_help = page.locator("#id_effective_helptext")

        effective.fill("2026-11-20T07:40")
        page.get_by_role("button", name="Save", exact=True).click()
        page.locator("#messages").wait_for()
        body = page.request.get(live_server.url + reverse("reports:payload", args=[report.pk]))

        assert body.json()["effectiveDateTime"] == "2026-11-20T12:40:00Z"
        assert effective.input_value() == "2026-11-20T07:40"
        assert expect_help.inner_text().startswith("America/New_York time")
    finally:
        context.close()
