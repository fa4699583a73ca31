"""Performer and Results interpreter: found by the first letters of any of the names with the
keyboard (a combobox over the practitioners the composer already has), and only ever a real
practitioner."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from reports import clinikapi, services
from reports.models import Report
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.browser import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(clinician) -> Report:
    return services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)


def edit_url(report: Report) -> str:
    return reverse("reports:edit", args=[report.pk])


def practitioner(last_name: str) -> clinikapi.Practitioner:
    everyone = clinikapi.iter_all(clinikapi.get_client().search_practitioners)
    return next(p for p in everyone if p.last_name == last_name)


def head_content(report: Report) -> Any:
    report.refresh_from_db()
    return report.versions.get(number=report.head).content


def test_every_practitioner_is_offered_in_a_labelled_searchable_select(clinician_client, report):
    everyone = list(clinikapi.iter_all(clinikapi.get_client().search_practitioners))

    page = clinician_client.get(edit_url(report)).content.decode()

    for field, label in (
        ("performer", "Performer"),
        ("results_interpreter", "Results interpreter"),
    ):
        select = re.search(
            rf'<select name="{field}" id="id_{field}"[^>]*>(.*?)</select>', page, re.S
        )
        assert select is not None, field
        assert "data-searchable-select" in select[0]
        assert f'<label for="id_{field}" class="form-label">{label}</label>' in page
        offered = re.findall(r'<option value="([^"]*)"', select[1])
        assert offered[0] == ""  # nobody chosen yet
        assert sorted(offered[1:]) == sorted(p.id for p in everyone)


def test_a_chosen_practitioner_is_saved_and_sent_as_a_reference(clinician_client, report):
    lopez, dubois = practitioner("López"), practitioner("Dubois")

    response = clinician_client.post(
        edit_url(report),
        {"base_version": 1, "performer": lopez.id, "results_interpreter": dubois.id},
    )

    assert response.status_code == 302
    assert (head_content(report)["performer"], head_content(report)["results_interpreter"]) == (
        lopez.id,
        dubois.id,
    )
    body = clinician_client.get(reverse("reports:payload", args=[report.pk])).json()
    assert lopez.id in json.dumps(body["performer"])
    assert dubois.id in json.dumps(body["resultsInterpreter"])


@pytest.mark.parametrize("field", ["performer", "results_interpreter"])
@pytest.mark.parametrize("sent", ["prac_nobody", FIXED_PATIENT_ID, "López"])
def test_anything_but_a_practitioners_id_is_refused(clinician_client, report, field, sent):
    saved = clinician_client.post(edit_url(report), {"base_version": 1, field: sent})
    autosaved = clinician_client.post(
        edit_url(report),
        {"base_version": 1, field: sent, "autosave": "1"},
        headers={"HX-Request": "true"},
    )

    assert saved.status_code == 200
    assert "Select a valid choice" in saved.content.decode()
    assert 'aria-invalid="true"' in saved.content.decode()
    assert autosaved.status_code == 422
    assert report.versions.count() == 1


# --- in the browser ----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_practitioners_are_found_by_the_start_of_any_name_with_the_keyboard(
    page, live_server, clinician, api_over_socket
):
    report = services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)
    lopez, dubois = practitioner("López"), practitioner("Dubois")
    sign_in(page, live_server.url, "clinician")
    page.goto(live_server.url + edit_url(report))
    performer = page.get_by_role("combobox", name="Performer")
    interpreter = page.get_by_role("combobox", name="Results interpreter")
    expect(page.locator("#id_performer")).to_be_hidden()  # the select stays, holding the value

    performer.focus()
    page.keyboard.type("marta lop")  # the given name and the start of the surname, no accent
    listbox = page.locator(f"#{performer.get_attribute('aria-controls')}")
    expect(listbox.get_by_role("option")).to_have_text([re.compile("López, Marta")])
    expect(performer).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Enter")
    expect(performer).to_have_value(re.compile("^López, Marta"))
    expect(page.locator("#autosave-status")).to_contain_text("saved automatically", timeout=10_000)
    interpreter.focus()
    page.keyboard.type("helene")
    page.keyboard.press("ArrowDown")
    expect(interpreter).to_have_attribute("aria-activedescendant", re.compile("option-0$"))
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator("#messages")).to_contain_text("Saved as version")
    page.reload()
    expect(page.get_by_role("combobox", name="Performer")).to_have_value(
        re.compile("^López, Marta")
    )
    expect(page.get_by_role("combobox", name="Results interpreter")).to_have_value(
        re.compile("^Dubois, Hélène")
    )
    content = head_content(report)
    assert (content["performer"], content["results_interpreter"]) == (lopez.id, dubois.id)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_name_nobody_has_chooses_nobody(page, live_server, clinician, api_over_socket):
    report = services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)
    sign_in(page, live_server.url, "clinician")
    page.goto(live_server.url + edit_url(report))
    performer = page.get_by_role("combobox", name="Performer")

    performer.focus()
    page.keyboard.type("zzz")
    expect(page.locator("#id_performer-search ~ [role=status]")).to_have_text("No match")
    page.keyboard.press("Enter")  # nothing to choose: the form is not submitted either
    page.keyboard.press("Tab")

    expect(performer).to_have_value("")
    expect(performer).to_have_attribute("aria-expanded", "false")
    assert page.locator("#id_performer").input_value() == ""
