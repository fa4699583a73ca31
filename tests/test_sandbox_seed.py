"""The sandbox seed: real LOINC / SNOMED CT terms, consistent clinical values, sound links."""

from __future__ import annotations

import base64
import csv
import gzip
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reports.sandbox import seed
from reports.sandbox.validation import validate_create

TERMINOLOGY = Path(__file__).resolve().parents[2] / "shared" / "terminology"
LOINC_TABLE = TERMINOLOGY / "loinc" / "LoincTableCore_2.78.csv.gz"
SNOMED_TABLE = TERMINOLOGY / "snomed" / "snomed_ips_gps_concepts.csv.gz"
SERVER_FIELDS = {"id", "createdAt", "updatedAt", "fullName"}


def read_table(path: Path, key: str, columns: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    assert path.exists(), (
        f"terminology file missing: {path} (the shared folder must sit beside the repo)"
    )
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return {row[key]: tuple(row[c] for c in columns) for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def loinc() -> dict[str, tuple[str, ...]]:
    return read_table(LOINC_TABLE, "LOINC_NUM", ("LONG_COMMON_NAME", "STATUS"))


@pytest.fixture(scope="module")
def snomed() -> dict[str, tuple[str, ...]]:
    return read_table(SNOMED_TABLE, "concept_id", ("preferred_term",))


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict[str, Any]]]:
    return seed.seed_data()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def codings(data: dict[str, list[dict[str, Any]]]) -> list[dict[str, str]]:
    found = [o["code"] for o in data["observations"]] + [lab["code"] for lab in data["labs"]]
    found += [
        o["valueCodeableConcept"] for o in data["observations"] if "valueCodeableConcept" in o
    ]
    found += [c for lab in data["labs"] for c in lab.get("conclusionCodes", [])]
    return found


def test_every_loinc_code_and_display_is_in_the_loinc_table(data: Any, loinc: Any) -> None:
    used = {(c["code"], c["display"]) for c in codings(data) if c["system"] == "http://loinc.org"}

    wrong = sorted(
        (code, display, loinc.get(code))
        for code, display in used
        if loinc.get(code, ("",))[0] != display
    )
    inactive = sorted(code for code, _ in used if loinc[code][1] != "ACTIVE")

    assert len(used) >= 40
    assert wrong == []
    assert inactive == []


def test_every_snomed_code_and_display_is_in_the_free_snomed_subset(data: Any, snomed: Any) -> None:
    used = {
        (c["code"], c["display"]) for c in codings(data) if c["system"] == "http://snomed.info/sct"
    }

    wrong = sorted(
        (code, display) for code, display in used if snomed.get(code, ("",))[0] != display
    )

    assert {code for code, _ in used} >= {"271737000", "260385009", "10828004"}
    assert wrong == []


def test_the_seed_is_deterministic_and_independent_of_today(data: Any) -> None:
    again = seed.seed_data()

    assert again == data
    stamps = [e["period"]["start"] for e in data["encounters"]]
    assert min(stamps) >= "2025-04-01" and max(stamps) < "2026-03-28"


def test_there_are_enough_people_with_varied_names(data: Any) -> None:
    patients, practitioners = data["patients"], data["practitioners"]
    surnames = Counter(p["lastName"].split("-")[0] for p in patients)
    names = " ".join(p["fullName"] for p in patients)

    assert len(patients) >= 22
    assert surnames["Okafor"] >= 3 and surnames["Nguyen"] >= 3
    assert {"Zoë Lefèvre", "José Álvarez", "Siobhán O'Connor", "Marco D'Angelo"} <= {
        f"{p['firstName']} {p['lastName']}" for p in patients
    }
    assert "-" in names and "'" in names
    assert {p["gender"] for p in patients} == {"female", "male", "other", "unknown"}
    assert (
        min(p["birthDate"] for p in patients)
        < "1945"
        < "2005"
        < max(p["birthDate"] for p in patients)
    )
    assert len(practitioners) >= 8
    assert [p["active"] for p in practitioners].count(False) == 1
    assert all(p["specialty"] and p["suffix"] for p in practitioners)


def test_practitioner_npis_pass_the_luhn_check(data: Any) -> None:
    npis = [p["npi"] for p in data["practitioners"]]

    assert all(re.fullmatch(r"1\d{9}", npi) for npi in npis)
    assert all(seed.npi_check_digit(npi[:9]) == npi[9] for npi in npis)
    assert seed.npi_check_digit("123456789") == "3"  # the worked example of the NPI standard


def test_each_patient_has_one_to_four_encounters_and_ten_to_thirty_results(data: Any) -> None:
    encounters = Counter(e["patientId"] for e in data["encounters"])
    observations = Counter(o["patientId"] for o in data["observations"])

    for patient in data["patients"]:
        assert 1 <= encounters[patient["id"]] <= 4, patient["fullName"]
        assert 10 <= observations[patient["id"]] <= 30, patient["fullName"]
    assert {e["class"] for e in data["encounters"]} == {"AMB", "IMP", "EMER"}


def test_observations_sit_inside_their_encounters_and_specimens(data: Any) -> None:
    encounters = {e["id"]: e for e in data["encounters"]}
    specimens = {s["id"]: s for s in data["specimens"]}

    for observation in data["observations"]:
        encounter = encounters[observation["encounterId"]]
        specimen = specimens[observation["specimenId"]]
        taken = when(observation["effectiveDateTime"])
        assert encounter["patientId"] == specimen["patientId"] == observation["patientId"]
        assert when(encounter["period"]["start"]) <= taken
        assert "end" not in encounter["period"] or taken <= when(encounter["period"]["end"])
        assert specimen["collection"]["collectedDateTime"] == observation["effectiveDateTime"]
        assert (observation["status"] == "preliminary") == (encounter["status"] == "in-progress")


def test_interpretation_flags_agree_with_value_and_range(data: Any) -> None:
    flags: Counter[str] = Counter()
    for observation in data["observations"]:
        flag = observation["interpretation"]
        flags[flag] += 1
        if "valueCodeableConcept" in observation:
            positive = observation["valueCodeableConcept"]["display"] == "Positive"
            assert flag == ("A" if positive else "N")
            continue
        value = observation["valueQuantity"]["value"]
        reference = observation["referenceRange"]
        low = reference.get("low", {}).get("value", float("-inf"))
        high = reference.get("high", {}).get("value", float("inf"))
        expected = {
            "N": low <= value <= high,
            "L": value < low,
            "LL": value < low,
            "H": value > high,
            "HH": value > high,
        }
        assert expected[flag], observation["code"]["display"]
        assert observation["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert observation["valueQuantity"]["unit"] == observation["valueQuantity"]["code"]

    assert flags["N"] > flags["H"] + flags["L"]
    assert min(flags["H"], flags["L"], flags["HH"], flags["LL"], flags["A"]) >= 1


def test_released_reports_point_at_their_patients_own_results(data: Any) -> None:
    observations = {o["id"]: o for o in data["observations"]}
    specimens = {s["id"]: s for s in data["specimens"]}

    for lab in data["labs"]:
        assert {observations[i]["patientId"] for i in lab.get("resultIds", [])} <= {
            lab["patientId"]
        }
        assert {specimens[i]["patientId"] for i in lab.get("specimenIds", [])} <= {lab["patientId"]}
    assert {lab["category"] for lab in data["labs"]} == {"LAB", "RAD", "PAT"}
    assert {"final", "preliminary", "amended"} <= {lab["status"] for lab in data["labs"]}
    assert {s["type"] for s in data["specimens"]} >= {"blood", "serum", "urine", "tissue"}


@pytest.mark.parametrize(
    "kind", ["labs", "patients", "encounters", "observations", "practitioners", "specimens"]
)
def test_seeded_resources_pass_the_sandboxs_own_validation(data: Any, kind: str) -> None:
    problems = []
    for resource in data[kind]:
        body = {k: v for k, v in resource.items() if k not in SERVER_FIELDS}
        cleaned, issues = validate_create(kind, body, strict=True)
        problems += issues
        assert cleaned == body, resource["id"]
        assert re.fullmatch(r"[a-z]+_[a-z0-9]{12}", resource["id"])

    assert problems == []


def test_the_fixed_patient_has_a_final_cbc_with_a_pdf(data: Any) -> None:
    patient = next(p for p in data["patients"] if p["id"] == seed.FIXED_PATIENT_ID)
    reports = [lab for lab in data["labs"] if lab["patientId"] == seed.FIXED_PATIENT_ID]
    final = next(lab for lab in reports if lab["status"] == "final")

    pdf = base64.b64decode(final["presentedForm"][0]["data"], validate=True)

    assert (patient["firstName"], patient["lastName"]) == ("Amara", "Okafor")
    assert patient["birthDate"] == seed.FIXED_PATIENT_BIRTH_DATE == "1984-11-09"
    assert final["code"]["code"] == "58410-2"
    assert final["conclusionCodes"] == [
        {"system": "http://snomed.info/sct", "code": "271737000", "display": "Anemia"}
    ]
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert len(final["resultIds"]) == 9
