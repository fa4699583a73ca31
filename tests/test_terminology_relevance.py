"""Relevance on the real files: what clinicians type, and the code that must come first or in
the top 3. Loads the LOINC report/panel subset, the LOINC rank sample (ranks and related
names) and the SNOMED CT IPS/GPS concepts from ../shared/terminology once for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from terminology import search
from terminology.models import LOINC, SNOMED, Concept, ImportRecord, LocalSynonym, SearchTerm

pytestmark = pytest.mark.django_db

SHARED = Path(__file__).resolve().parents[2] / "shared" / "terminology"


@pytest.fixture(scope="module")
def real_terminology(
    django_db_setup: None, django_db_blocker: pytest.FixtureRequest
) -> Iterator[None]:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        call_command("load_starter_terminology")  # local synonyms and ranks of the starter set
        call_command(
            "import_loinc", str(SHARED / "loinc" / "loinc_report_and_panel_codes_2.78.csv")
        )
        call_command("import_loinc", str(SHARED / "loinc" / "loinc_lab_rank_order_sample_2.7x.csv"))
        call_command("import_snomed", str(SHARED / "snomed" / "snomed_ips_gps_concepts.csv.gz"))
        yield
        for model in (SearchTerm, Concept, LocalSynonym, ImportRecord):
            model.objects.all().delete()


# (system, query, all LOINC?, expected code, must be within the first N)
CASES = [
    # abbreviations clinicians type
    ("loinc", "cbc", False, "58410-2", 1),
    ("loinc", "cmp", False, "24323-8", 1),
    ("loinc", "bmp", False, "51990-0", 3),
    ("loinc", "tsh", True, "3016-3", 1),
    ("loinc", "hba1c", True, "4548-4", 1),
    ("loinc", "lipid", False, "24331-1", 3),
    ("loinc", "urinalysis", False, "24356-8", 1),
    ("loinc", "inr", True, "34714-6", 3),
    ("loinc", "crp", True, "1988-5", 1),
    ("loinc", "abg", False, "24336-0", 1),
    ("loinc", "cxr", False, "36643-5", 1),
    # words and partial words
    ("loinc", "blood count", False, "58410-2", 1),
    ("loinc", "complete blood", False, "58410-2", 3),
    ("loinc", "hemoglobin", True, "718-7", 1),
    ("loinc", "haemoglobin", True, "718-7", 1),
    ("loinc", "hemog", True, "718-7", 1),
    ("loinc", "comprehensive metab", False, "24323-8", 3),
    ("loinc", "potassium", True, "2823-3", 1),
    ("loinc", "sodium", True, "2951-2", 1),
    ("loinc", "creatinine serum", True, "2160-0", 3),
    ("loinc", "glucose serum", True, "2345-7", 3),
    ("loinc", "pathology study", False, "11526-1", 1),
    ("loinc", "surgical path", False, "11529-5", 1),
    ("loinc", "diagnostic imaging", False, "18748-4", 1),
    ("loinc", "laboratory report", False, "11502-2", 1),
    # two words out of order, mixed case
    ("loinc", "chest xr", False, "36643-5", 3),
    ("loinc", "CHEST ct", False, "24627-2", 1),
    ("loinc", "panel lipid", False, "24331-1", 3),
    ("loinc", "head ct", False, "24725-4", 1),
    # codes
    ("loinc", "58410-2", False, "58410-2", 1),
    ("loinc", "718-7", True, "718-7", 1),
    ("snomed", "44054006", False, "44054006", 1),
    # SNOMED CT findings and disorders
    ("snomed", "anemia", False, "271737000", 1),
    ("snomed", "anaemia", False, "271737000", 1),
    ("snomed", "ANÉMIA", False, "271737000", 1),
    ("snomed", "diabetes", False, "73211009", 1),
    ("snomed", "type 2 diab", False, "44054006", 1),
    ("snomed", "diabetes type 2", False, "44054006", 1),
    ("snomed", "htn", False, "38341003", 1),
    ("snomed", "hypertensive dis", False, "38341003", 1),
    ("snomed", "pneumonia", False, "233604007", 1),
    ("snomed", "asthma", False, "195967001", 1),
    ("snomed", "hyperreactive airway", False, "195967001", 1),
    ("snomed", "myocardial inf", False, "22298006", 1),
    ("snomed", "myocardial infarction", False, "22298006", 1),
    ("snomed", "heart attack", False, "22298006", 1),
    ("snomed", "atrial fib", False, "49436004", 1),
    ("snomed", "copd", False, "13645005", 1),
    ("snomed", "fracture bone", False, "125605004", 1),
    ("snomed", "fract femur", False, "71620000", 3),
    ("snomed", "no abnormality", False, "281900007", 1),
    ("snomed", "iron defic", False, "87522002", 3),
    ("snomed", "hypothyroid", False, "40930008", 1),
    ("snomed", "urinary tract infec", False, "68566005", 3),
    ("snomed", "chronic kidney", False, "709044004", 1),
    ("snomed", "heart failure", False, "84114007", 1),
    # misspelled endings: the prefix still matches
    ("snomed", "pneumoni", False, "233604007", 1),
    ("snomed", "osteoporos", False, "64859006", 1),
    ("loinc", "potassiu", True, "2823-3", 1),
]


@pytest.mark.parametrize(("system", "query", "all_loinc", "expected", "within"), CASES)
def test_the_right_code_comes_first_or_in_the_top_3(
    real_terminology, system, query, all_loinc, expected, within
):
    uri = {"loinc": LOINC, "snomed": SNOMED}[system]

    found = [m.code for m in search.search(uri, query, limit=10, all_scopes=all_loinc)]

    assert expected in found[:within], found[:5]


def test_the_real_files_are_loaded_at_their_size(real_terminology):
    assert Concept.objects.filter(system=LOINC).count() >= 19_380
    assert Concept.objects.filter(system=SNOMED).count() >= 23_491
