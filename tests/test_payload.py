"""The exact POST /v1/labs body built from a draft, and the rules it is checked against."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reports.payload import (
    LOINC,
    SNOMED_CT,
    CodedConcept,
    ReportContent,
    build_payload,
    check_payload,
)

CBC = CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count")
ANEMIA = CodedConcept(SNOMED_CT, "271737000", "Anemia")


def complete(**changes: object) -> ReportContent:
    fields: dict[str, object] = {
        "patient_id": "pt_8f2k1m0a4x7q",
        "encounter_id": "enc_3n7q0v",
        "code": CBC,
        "category": "LAB",
        "status": "preliminary",
        "effective": datetime(2026, 3, 2, 7, 40, tzinfo=UTC),
        "result_ids": ("obs_hgb51", "obs_wbc52"),
        "specimen_ids": ("spec_b17c",),
        "performer": "prac_lab017",
        "results_interpreter": "prac_mlopez",
        "conclusion": "Mild normocytic anaemia.",
        "conclusion_codes": (ANEMIA,),
        **changes,
    }
    return ReportContent(**fields)  # type: ignore[arg-type]


def test_a_complete_draft_becomes_the_contract_body_with_its_field_names():
    payload = build_payload(complete())

    assert payload == {
        "status": "preliminary",
        "code": {"system": LOINC, "code": "58410-2", "display": CBC.display},
        "patientId": "pt_8f2k1m0a4x7q",
        "category": "LAB",
        "encounterId": "enc_3n7q0v",
        "effectiveDateTime": "2026-03-02T07:40:00Z",
        "resultIds": ["obs_hgb51", "obs_wbc52"],
        "conclusion": "Mild normocytic anaemia.",
        "conclusionCodes": [{"system": SNOMED_CT, "code": "271737000", "display": "Anemia"}],
        "performer": "prac_lab017",
        "resultsInterpreter": "prac_mlopez",
        "specimenIds": ["spec_b17c"],
    }
    assert check_payload(complete()) == []


def test_only_the_fields_that_are_set_are_sent():
    payload = build_payload(ReportContent(patient_id="pt_1", code=CBC, status="registered"))

    assert set(payload) == {"status", "code", "patientId"}


def test_times_entered_with_an_offset_are_sent_as_utc_with_z():
    paris = timezone(timedelta(hours=1))

    payload = build_payload(complete(effective=datetime(2026, 3, 2, 8, 40, tzinfo=paris)))

    assert payload["effectiveDateTime"] == "2026-03-02T07:40:00Z"


def test_content_survives_a_round_trip_through_json():
    content = complete()

    assert ReportContent.from_json(content.to_json()) == content


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"code": None}, "code", "Choose the report code"),
        ({"code": CodedConcept(SNOMED_CT, "1")}, "code", "must be a LOINC code"),
        ({"status": ""}, "status", "Choose the status"),
        ({"status": "amended"}, "status", "must be registered, partial, preliminary or final"),
        ({"category": "XR"}, "category", "LAB, RAD or PAT"),
        ({"effective": None}, "effective", "Enter the effective date/time"),
        ({"effective": datetime(2026, 3, 2, 7, 40)}, "effective", "no time zone"),  # noqa: DTZ001
        ({"encounter_id": "enc/../x"}, "encounter_id", "not a valid ClinikAPI id"),
        ({"result_ids": ("obs_1", "obs_1")}, "result_ids", "chosen twice"),
        ({"specimen_ids": ("bad id",)}, "specimen_ids", "invalid id"),
        ({"conclusion": "x" * 5001}, "conclusion", "5,001 characters"),
        ({"conclusion_codes": (CodedConcept(LOINC, "1"),)}, "conclusion_codes", "SNOMED CT"),
        ({"conclusion_codes": (ANEMIA, ANEMIA)}, "conclusion_codes", "chosen twice"),
        ({"patient_id": ""}, "patient_id", "Choose the patient"),
    ],
)
def test_each_broken_rule_is_reported_at_its_field(changes, field, fragment):
    problems = check_payload(complete(**changes))

    assert [p.field for p in problems] == [field]
    assert fragment in problems[0].message


def test_a_registered_report_may_leave_the_effective_time_open():
    assert check_payload(complete(status="registered", effective=None)) == []


def test_a_conclusion_of_exactly_5000_characters_is_accepted():
    assert check_payload(complete(conclusion="x" * 5000)) == []


def test_problems_name_the_field_as_the_composer_labels_it():
    problems = check_payload(complete(code=None, conclusion="x" * 5001))

    assert [p.label for p in problems] == ["Report code", "Conclusion"]
