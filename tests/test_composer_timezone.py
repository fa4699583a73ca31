"""Dates in the clinician's time zone (sent as UTC `Z`); practitioners found by surname."""

from __future__ import annotations

import pytest
from django.urls import reverse

from reports import services
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.browser import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(clinician):
    return services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)


@pytest.mark.parametrize(
    ("zone", "sent"),
    [
        ("America/New_York", "2026-11-20T12:40:00Z"),  # UTC−5 in November
        ("Asia/Kolkata", "2026-11-20T02:10:00Z"),  # UTC+5:30
        ("Mars/Olympus_Mons", "2026-11-20T07:40:00Z"),  # not a zone: the server's (UTC)
    ],
)
def test_a_time_entered_in_the_users_zone_is_sent_as_utc(clinician_client, report, zone, sent):
    clinician_client.cookies["clinikui_tz"] = zone
    url = reverse("reports:edit", args=[report.pk])
    saved = clinician_client.post(url, {"base_version": 1, "effective": "2026-11-20T07:40"})
    assert saved.status_code == 302
    payload = clinician_client.get(reverse("reports:payload", args=[report.pk])).json()
    assert payload["effectiveDateTime"] == sent

    page = clinician_client.get(url).content.decode()
    assert 'value="2026-11-20T07:40"' in page  # shown back in the same zone
    shown_zone = zone if zone != "Mars/Olympus_Mons" else "UTC"
    assert f"{shown_zone} time" in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_browser_reports_its_time_zone(browser, live_server, clinician, api_over_socket):
    report = services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)
    context = browser.new_context(timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        sign_in(page, live_server.url, "clinician")
        page.goto(f"{live_server.url}{reverse('reports:edit', args=[report.pk])}")
        help_text = page.locator("#div_id_effective").inner_text()
        assert "Asia/Tokyo time" in help_text
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        assert cookies["clinikui_tz"] == "Asia%2FTokyo"
    finally:
        context.close()


def test_practitioners_are_listed_surname_first_so_typing_a_surname_finds_them(
    clinician_client, report
):
    from reports.clinikapi import Practitioner
    from reports.forms import practitioner_label

    assert (
        practitioner_label(
            Practitioner("prac_1", "Marta", "López", prefix=("Dr.",), suffix=("MD",))
        )
        == "López, Marta — Dr., MD"
    )
    assert practitioner_label(Practitioner("prac_2", text_name="Night lab team")) == (
        "Night lab team"
    )
    page = clinician_client.get(reverse("reports:edit", args=[report.pk])).content.decode()
    performer = page[page.index('id="id_performer"') :]
    performer = performer[: performer.index("</select>")]
    labels = [part.split(">", 1)[1] for part in performer.split("<option")[2:]]
    surnames = [label.split(",")[0] for label in labels]
    assert surnames == sorted(surnames, key=str.casefold)  # in surname order, surname first
