"""Deterministic seed data for the ClinikAPI sandbox.

Fixed random seed and fixed dates (encounters from April 2025 to the end of March 2026), so every
run and every dataset holds the same patients, encounters, observations, practitioners, specimens
and released reports, with the same ids. Nothing depends on today's date.

Clinical content is realistic rather than real: LOINC codes with their LOINC long common names
(checked against the LOINC 2.78 table by ``tests/test_sandbox_seed.py``), UCUM units, adult
reference ranges, interpretation flags computed from value versus range (``HH``/``LL`` beyond
critical limits), SNOMED CT conclusion codes from the freely licensed IPS/GPS subset.

This material contains content from LOINC (http://loinc.org). LOINC is copyright © Regenstrief
Institute, Inc. and the Logical Observation Identifiers Names and Codes (LOINC) Committee and is
available at no cost under the license at http://loinc.org/license. SNOMED CT content is from the
SNOMED International Global Patient Set / IPS Terminology, used under CC BY 4.0.

The fixed patient for tests is Amara N. Okafor, born 1984-11-09, id ``FIXED_PATIENT_ID``: two CBCs
showing iron-deficiency anaemia, one released as a final report with a PDF attached.
"""

from __future__ import annotations

import base64
import copy
import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reports.sandbox.store import ID_PREFIXES, Resource

RANDOM_SEED = 20260302
FIRST_DAY = datetime(2025, 4, 1, tzinfo=UTC)
LAST_DAY = datetime(2026, 3, 27, tzinfo=UTC)
FIXED_PATIENT_ID = "pt_8f2k1m0a4x7q"
FIXED_PATIENT_NAME = "Amara Okafor"
FIXED_PATIENT_BIRTH_DATE = "1984-11-09"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


# -- terminology ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Analyte:
    """One laboratory test: LOINC code and long common name, UCUM unit, adult ranges."""

    code: str
    display: str
    unit: str
    low: float | None
    high: float | None
    normal: tuple[float, float]
    decimals: int = 1
    critical_low: float | None = None
    critical_high: float | None = None
    female: tuple[float, float] | None = None
    range_text: str | None = None
    steps: tuple[float, ...] = ()
    qualitative: bool = False


def _a(
    code: str, display: str, unit: str, low: float | None, high: float | None, **kw: Any
) -> Analyte:
    normal = kw.pop("normal", None)
    if normal is None:
        assert low is not None and high is not None
        span = high - low
        normal = (low + span * 0.12, high - span * 0.12)
    return Analyte(code, display, unit, low, high, normal, **kw)


ANALYTES: Mapping[str, Analyte] = {
    a.code: a
    for a in (
        # Complete blood count
        _a(
            "718-7",
            "Hemoglobin [Mass/volume] in Blood",
            "g/dL",
            13.5,
            17.5,
            female=(12.0, 15.5),
            critical_low=7.0,
            critical_high=20.0,
        ),
        _a(
            "4544-3",
            "Hematocrit [Volume Fraction] of Blood by Automated count",
            "%",
            41.0,
            53.0,
            female=(36.0, 46.0),
        ),
        _a(
            "6690-2",
            "Leukocytes [#/volume] in Blood by Automated count",
            "10*3/uL",
            4.0,
            11.0,
            critical_low=2.0,
            critical_high=30.0,
        ),
        _a(
            "789-8",
            "Erythrocytes [#/volume] in Blood by Automated count",
            "10*6/uL",
            4.5,
            5.9,
            decimals=2,
            female=(4.0, 5.2),
        ),
        _a(
            "777-3",
            "Platelets [#/volume] in Blood by Automated count",
            "10*3/uL",
            150,
            400,
            decimals=0,
            critical_low=20,
            critical_high=1000,
        ),
        _a("787-2", "MCV [Entitic volume] by Automated count", "fL", 80.0, 100.0),
        _a("785-6", "MCH [Entitic mass] by Automated count", "pg", 27.0, 33.0),
        _a("786-4", "MCHC [Mass/volume] by Automated count", "g/dL", 32.0, 36.0),
        _a("788-0", "Erythrocyte distribution width [Ratio] by Automated count", "%", 11.5, 14.5),
        # Chemistry
        _a(
            "2345-7",
            "Glucose [Mass/volume] in Serum or Plasma",
            "mg/dL",
            70,
            99,
            decimals=0,
            critical_low=50,
            critical_high=400,
        ),
        _a(
            "2951-2",
            "Sodium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            135,
            145,
            decimals=0,
            critical_low=120,
            critical_high=160,
        ),
        _a(
            "2823-3",
            "Potassium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            3.5,
            5.1,
            critical_low=2.8,
            critical_high=6.0,
        ),
        _a("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 98, 107, decimals=0),
        _a(
            "2028-9",
            "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
            "mmol/L",
            22,
            29,
            decimals=0,
        ),
        _a("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 7, 20, decimals=0),
        _a(
            "2160-0",
            "Creatinine [Mass/volume] in Serum or Plasma",
            "mg/dL",
            0.74,
            1.35,
            decimals=2,
            female=(0.59, 1.04),
        ),
        _a(
            "98979-8",
            "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
            "Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)",
            "mL/min/{1.73_m2}",
            60,
            None,
            decimals=0,
            normal=(72, 112),
            range_text=">=60 mL/min/1.73 m2",
        ),
        _a(
            "17861-6",
            "Calcium [Mass/volume] in Serum or Plasma",
            "mg/dL",
            8.6,
            10.3,
            critical_low=6.5,
            critical_high=13.0,
        ),
        _a("2885-2", "Protein [Mass/volume] in Serum or Plasma", "g/dL", 6.0, 8.3),
        _a("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.5, 5.0),
        _a("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.1, 1.2),
        _a("1968-7", "Bilirubin.direct [Mass/volume] in Serum or Plasma", "mg/dL", 0.0, 0.3),
        _a(
            "6768-6",
            "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L",
            44,
            147,
            decimals=0,
        ),
        _a(
            "1742-6",
            "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L",
            7,
            56,
            decimals=0,
        ),
        _a(
            "1920-8",
            "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L",
            10,
            40,
            decimals=0,
        ),
        _a(
            "2324-2",
            "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L",
            9,
            48,
            decimals=0,
        ),
        # Lipids
        _a(
            "2093-3",
            "Cholesterol [Mass/volume] in Serum or Plasma",
            "mg/dL",
            None,
            200,
            decimals=0,
            normal=(148, 192),
            range_text="<200 mg/dL",
        ),
        _a(
            "2571-8",
            "Triglyceride [Mass/volume] in Serum or Plasma",
            "mg/dL",
            None,
            150,
            decimals=0,
            normal=(62, 140),
            range_text="<150 mg/dL",
        ),
        _a(
            "2085-9",
            "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
            "mg/dL",
            40,
            None,
            decimals=0,
            normal=(44, 78),
            range_text=">=40 mg/dL",
        ),
        _a(
            "13457-7",
            "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
            "mg/dL",
            None,
            130,
            decimals=0,
            normal=(70, 124),
            range_text="<130 mg/dL",
        ),
        # Thyroid
        _a(
            "3016-3",
            "Thyrotropin [Units/volume] in Serum or Plasma",
            "m[IU]/L",
            0.4,
            4.0,
            decimals=2,
        ),
        _a(
            "3024-7",
            "Thyroxine (T4) free [Mass/volume] in Serum or Plasma",
            "ng/dL",
            0.8,
            1.8,
            decimals=2,
        ),
        # Coagulation
        _a("5902-2", "Prothrombin time (PT)", "s", 11.0, 13.5),
        _a(
            "6301-6",
            "INR in Platelet poor plasma by Coagulation assay",
            "{INR}",
            0.8,
            1.1,
            critical_high=5.0,
        ),
        _a("14979-9", "aPTT in Platelet poor plasma by Coagulation assay", "s", 25.0, 35.0),
        # Glycated haemoglobin
        _a("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, normal=(4.6, 5.5)),
        # Urinalysis (dipstick)
        _a("5811-5", "Specific gravity of Urine by Test strip", "{SG}", 1.005, 1.030, decimals=3),
        _a(
            "5803-2",
            "pH of Urine by Test strip",
            "[pH]",
            5.0,
            8.0,
            steps=(5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0),
        ),
        _a(
            "5804-0",
            "Protein [Mass/volume] in Urine by Test strip",
            "mg/dL",
            None,
            14,
            decimals=0,
            normal=(0, 0),
            range_text="Negative",
            steps=(0, 30, 100, 300),
        ),
        _a(
            "5792-7",
            "Glucose [Mass/volume] in Urine by Test strip",
            "mg/dL",
            None,
            14,
            decimals=0,
            normal=(0, 0),
            range_text="Negative",
            steps=(0, 100, 250, 500, 1000),
        ),
        _a(
            "5794-3",
            "Hemoglobin [Presence] in Urine by Test strip",
            "",
            None,
            None,
            normal=(0, 0),
            range_text="Negative",
            qualitative=True,
        ),
        _a(
            "5799-2",
            "Leukocyte esterase [Presence] in Urine by Test strip",
            "",
            None,
            None,
            normal=(0, 0),
            range_text="Negative",
            qualitative=True,
        ),
    )
}

NEGATIVE = {"system": SNOMED, "code": "260385009", "display": "Negative"}
POSITIVE = {"system": SNOMED, "code": "10828004", "display": "Positive"}


@dataclass(frozen=True, slots=True)
class Panel:
    name: str
    code: str
    display: str
    members: tuple[str, ...]
    specimen: str


_BMP = ("2345-7", "2951-2", "2823-3", "2075-0", "2028-9", "3094-0", "2160-0", "98979-8", "17861-6")
PANELS: Mapping[str, Panel] = {
    p.name: p
    for p in (
        Panel(
            "cbc",
            "58410-2",
            "CBC panel - Blood by Automated count",
            ("718-7", "4544-3", "6690-2", "789-8", "777-3", "787-2", "785-6", "786-4", "788-0"),
            "blood",
        ),
        Panel("bmp", "51990-0", "Basic metabolic panel - Blood", _BMP, "serum"),
        Panel(
            "cmp",
            "24323-8",
            "Comprehensive metabolic 2000 panel - Serum or Plasma",
            (*_BMP, "2885-2", "1751-7", "1975-2", "6768-6", "1742-6", "1920-8"),
            "serum",
        ),
        Panel(
            "liver",
            "24325-3",
            "Hepatic function 2000 panel - Serum or Plasma",
            ("2885-2", "1751-7", "1975-2", "1968-7", "6768-6", "1742-6", "1920-8", "2324-2"),
            "serum",
        ),
        Panel(
            "lipid",
            "24331-1",
            "Lipid 1996 panel - Serum or Plasma",
            ("2093-3", "2571-8", "2085-9", "13457-7"),
            "serum",
        ),
        Panel(
            "thyroid",
            "24348-5",
            "Free T4 and TSH panel - Serum or Plasma",
            ("3016-3", "3024-7"),
            "serum",
        ),
        Panel(
            "coag",
            "34528-0",
            "PT panel - Platelet poor plasma by Coagulation assay",
            ("5902-2", "6301-6", "14979-9"),
            "plasma",
        ),
        Panel(
            "ua",
            "24357-6",
            "Urinalysis macro (dipstick) panel - Urine",
            ("5811-5", "5803-2", "5804-0", "5792-7", "5794-3", "5799-2"),
            "urine",
        ),
        Panel("a1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", ("4548-4",), "blood"),
    )
}
XR_CHEST = {"system": LOINC, "code": "36643-5", "display": "XR Chest 2 Views"}
SURGICAL_PATHOLOGY = {"system": LOINC, "code": "11529-5", "display": "Surgical pathology study"}

CONTAINERS = {
    "blood": "EDTA tube (lavender top)",
    "serum": "Serum separator tube (gold top)",
    "plasma": "Sodium citrate tube (light blue top)",
    "urine": "Sterile urine container",
    "tissue": "Formalin container",
}


# -- clinical profiles ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    panels: tuple[str, ...]
    values: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    positive: tuple[str, ...] = ()
    diagnosis: str = "Z00.00"
    reason: str = "Routine examination"


PROFILES: Mapping[str, Profile] = {
    "healthy": Profile(()),
    "anemia": Profile(
        ("cbc", "cbc"),
        {
            "718-7": (8.6, 10.4),
            "4544-3": (27.0, 32.0),
            "787-2": (68.0, 76.0),
            "785-6": (21.0, 25.0),
            "786-4": (30.0, 31.6),
            "788-0": (15.6, 18.4),
            "789-8": (3.6, 3.95),
        },
        diagnosis="D50.9",
        reason="Fatigue",
    ),
    "diabetes": Profile(
        ("a1c", "bmp", "ua"),
        {"2345-7": (165, 255), "4548-4": (7.4, 9.6), "5792-7": (250, 500)},
        diagnosis="E11.9",
        reason="Diabetes review",
    ),
    "diabetes_hypo": Profile(
        ("a1c", "bmp"),
        {"2345-7": (38, 46), "4548-4": (7.1, 7.9)},
        diagnosis="E11.649",
        reason="Hypoglycaemia on insulin",
    ),
    "ckd": Profile(
        ("bmp", "cmp", "ua"),
        {
            "2160-0": (1.9, 2.7),
            "3094-0": (28, 46),
            "98979-8": (32, 52),
            "2823-3": (5.2, 5.8),
            "2028-9": (18, 21),
            "5804-0": (30, 100),
            "718-7": (10.9, 12.2),
        },
        diagnosis="N18.3",
        reason="Chronic kidney disease review",
    ),
    "ckd_hyperkalemia": Profile(
        ("bmp", "cmp"),
        {
            "2160-0": (2.4, 3.1),
            "3094-0": (38, 58),
            "98979-8": (20, 29),
            "2823-3": (6.3, 6.7),
            "2028-9": (17, 20),
        },
        diagnosis="E87.5",
        reason="Weakness, abnormal ECG",
    ),
    "hyperlipidemia": Profile(
        ("lipid", "lipid"),
        {"2093-3": (236, 290), "2571-8": (180, 320), "2085-9": (31, 38), "13457-7": (156, 205)},
        diagnosis="E78.5",
        reason="Lipid review",
    ),
    "hypothyroid": Profile(
        ("thyroid", "thyroid", "lipid"),
        {"3016-3": (7.5, 14.0), "3024-7": (0.5, 0.75), "2093-3": (206, 240)},
        diagnosis="E03.9",
        reason="Tiredness and weight gain",
    ),
    "thrombocytopenia": Profile(
        ("cbc", "cbc", "coag"),
        {"777-3": (12, 19)},
        diagnosis="D69.6",
        reason="Easy bruising",
    ),
    "uti": Profile(
        ("ua", "ua", "cbc"),
        {"6690-2": (11.5, 14.0)},
        positive=("5799-2", "5794-3"),
        diagnosis="N39.0",
        reason="Dysuria",
    ),
    "liver": Profile(
        ("liver", "liver"),
        {
            "1742-6": (95, 160),
            "1920-8": (80, 140),
            "2324-2": (110, 220),
            "6768-6": (150, 210),
            "1975-2": (1.4, 2.4),
            "1968-7": (0.4, 0.9),
            "1751-7": (3.0, 3.4),
        },
        diagnosis="K76.0",
        reason="Abnormal liver tests",
    ),
    "warfarin": Profile(
        ("coag", "coag", "cbc"),
        {"6301-6": (2.2, 3.2), "5902-2": (24, 34), "14979-9": (36, 42)},
        diagnosis="Z79.01",
        reason="Anticoagulation monitoring",
    ),
}
EXTRA_PANELS = ("cbc", "bmp", "lipid", "ua", "a1c", "thyroid", "cmp")


@dataclass(frozen=True, slots=True)
class PatientSpec:
    first: str
    last: str
    gender: str
    birth: str
    profile: str
    middle: str | None = None
    panels: tuple[str, ...] = ()
    active: bool = True
    city: str = "Leeds"
    country: str = "GB"


PATIENTS: tuple[PatientSpec, ...] = (
    PatientSpec("Amara", "Okafor", "female", FIXED_PATIENT_BIRTH_DATE, "anemia", middle="N."),
    PatientSpec("Chinedu", "Okafor", "male", "1952-02-17", "ckd"),
    PatientSpec("Ifeoma", "Okafor-Bello", "female", "2001-06-30", "healthy"),
    PatientSpec("Zoë", "Lefèvre", "female", "1992-04-03", "healthy", panels=("ua",)),
    PatientSpec("José", "Álvarez", "male", "1947-09-21", "diabetes"),
    PatientSpec("Siobhán", "O'Connor", "female", "1975-12-12", "hyperlipidemia"),
    PatientSpec("Marco", "D'Angelo", "male", "1969-08-05", "healthy", panels=("cbc",)),
    PatientSpec("Linh", "Nguyen", "female", "1988-01-27", "thrombocytopenia"),
    PatientSpec("Bao", "Nguyen", "male", "2007-10-14", "healthy"),
    PatientSpec("Mai", "Nguyen", "female", "1953-03-08", "hypothyroid", middle="Thi"),
    PatientSpec("Anna-Lena", "Schäfer", "female", "1999-07-19", "uti", city="Manchester"),
    PatientSpec("Søren", "Østergaard", "male", "1981-05-02", "liver", city="York"),
    PatientSpec("Aylin", "Yılmaz", "female", "1990-10-23", "healthy", city="Bradford"),
    PatientSpec("Rajesh", "Iyer", "male", "1963-06-11", "warfarin"),
    PatientSpec("Fatima", "Al-Hassan", "female", "1979-02-28", "diabetes", city="Bradford"),
    PatientSpec("Noah", "Bergström", "male", "2008-09-03", "healthy"),
    PatientSpec("Élodie", "Marchand", "female", "1995-11-30", "healthy", city="York"),
    PatientSpec("Tomasz", "Wójcik", "male", "1972-01-16", "hyperlipidemia", city="Manchester"),
    PatientSpec("Grace", "Mensah", "female", "1940-05-07", "hypothyroid"),
    PatientSpec("Kwame", "Mensah", "male", "1938-12-19", "ckd_hyperkalemia"),
    PatientSpec("Hannah", "Price-Whitaker", "female", "1986-08-22", "healthy"),
    PatientSpec("Luis", "Peña", "male", "1983-04-15", "liver", city="Manchester"),
    PatientSpec("Ngozi", "Adeyemi", "female", "1991-03-09", "anemia"),
    PatientSpec("Niamh", "Ó Súilleabháin", "female", "1966-07-01", "diabetes_hypo", city="York"),
    PatientSpec("Sam", "Taylor", "other", "2003-12-05", "healthy"),
    PatientSpec("Alex", "Rivera", "unknown", "1997-02-14", "healthy", active=False),
)

STREETS = (
    "Elm Row",
    "Mill Lane",
    "Station Road",
    "Church Street",
    "Park Terrace",
    "Victoria Road",
    "Chapel Walk",
    "Queens Crescent",
    "Orchard Close",
    "Beech Grove",
)
POSTCODES = {"Leeds": "LS1", "Manchester": "M1", "York": "YO1", "Bradford": "BD1"}


@dataclass(frozen=True, slots=True)
class PractitionerSpec:
    key: str
    first: str
    last: str
    gender: str
    specialty: str
    prefix: tuple[str, ...] = ("Dr.",)
    suffix: tuple[str, ...] = ("MD",)
    active: bool = True


PRACTITIONERS: tuple[PractitionerSpec, ...] = (
    PractitionerSpec("haem", "Marta", "López", "female", "Haematology"),
    PractitionerSpec("im", "Daniel", "Whitfield", "male", "Internal Medicine"),
    PractitionerSpec("endo", "Priya", "Raman", "female", "Endocrinology"),
    PractitionerSpec("renal", "Olumide", "Adebayo", "male", "Nephrology", suffix=("MBBS", "FRCP")),
    PractitionerSpec("path", "Hélène", "Dubois", "female", "Anatomic Pathology"),
    PractitionerSpec("rad", "Kenji", "Watanabe", "male", "Diagnostic Radiology"),
    PractitionerSpec("ed", "Sarah", "Lindqvist", "female", "Emergency Medicine"),
    PractitionerSpec("fm", "Tomás", "Herrera", "male", "Family Medicine", suffix=("DO",)),
    PractitionerSpec(
        "lab", "Ruth", "Abernethy", "female", "Clinical Chemistry", prefix=(), suffix=("PhD",)
    ),
    PractitionerSpec("gi", "Margaret", "Ellison", "female", "Gastroenterology", active=False),
)
CLINICIAN_FOR_PROFILE = {
    "anemia": "haem",
    "thrombocytopenia": "haem",
    "warfarin": "haem",
    "diabetes": "endo",
    "diabetes_hypo": "endo",
    "hypothyroid": "endo",
    "ckd": "renal",
    "ckd_hyperkalemia": "renal",
    "liver": "im",
    "hyperlipidemia": "im",
    "uti": "fm",
    "healthy": "fm",
}
AMB_TYPES = ("follow-up", "annual check-up", "outpatient consultation", "chronic disease review")
AMB_LOCATIONS = (
    "Primary Care Clinic 3",
    "Outpatient Haematology, Room 2",
    "Endocrine Clinic",
    "Renal Outpatients, Room 5",
    "Medical Outpatients, Room 11",
)


# -- building -------------------------------------------------------------------------------------


def seed_data() -> dict[str, list[Resource]]:
    """A fresh deep copy of the seed, keyed by resource kind (``labs``, ``patients`` ...)."""
    return copy.deepcopy(_build())


@functools.cache
def _build() -> dict[str, list[Resource]]:
    return _Builder(random.Random(RANDOM_SEED)).build()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def interpretation(analyte: Analyte, value: float, *, female: bool) -> str:
    """N / L / H, or LL / HH beyond the critical limits."""
    low, high = reference_limits(analyte, female=female)
    if analyte.critical_low is not None and value < analyte.critical_low:
        return "LL"
    if analyte.critical_high is not None and value > analyte.critical_high:
        return "HH"
    if low is not None and value < low:
        return "L"
    if high is not None and value > high:
        return "H"
    return "N"


def reference_limits(analyte: Analyte, *, female: bool) -> tuple[float | None, float | None]:
    if female and analyte.female is not None:
        return analyte.female
    return analyte.low, analyte.high


def npi_check_digit(first_nine: str) -> str:
    """Luhn check digit over the NPI with its ``80840`` card-issuer prefix."""
    digits = [int(d) for d in "80840" + first_nine]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def report_pdf(lines: Sequence[str]) -> bytes:
    """A small, valid one-page PDF showing ``lines`` (ASCII) in Helvetica."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    shown = " ".join(f"({escape(line)}) '" for line in lines)
    content = f"BT /F1 11 Tf 16 TL 72 740 Td {shown} ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("ascii")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode("ascii")
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode("ascii")
    return out


@dataclass(slots=True)
class _Visit:
    """One encounter being built, with the panels drawn at it."""

    encounter: Resource
    collected: datetime
    panels: list[str]
    female: bool
    observations: dict[str, list[str]] = field(default_factory=dict)
    specimens: dict[str, str] = field(default_factory=dict)


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.data: dict[str, list[Resource]] = {kind: [] for kind in ID_PREFIXES}
        self.practitioners: dict[str, str] = {}
        self.visits: dict[int, list[_Visit]] = {}
        self.patient_ids: list[str] = []

    def new_id(self, kind: str) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        while True:
            candidate = f"{ID_PREFIXES[kind]}_" + "".join(self.rng.choices(alphabet, k=12))
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def build(self) -> dict[str, list[Resource]]:
        self.add_practitioners()
        for index, spec in enumerate(PATIENTS):
            self.add_patient(index, spec)
        self.add_reports()
        return self.data

    # -- practitioners and patients ---------------------------------------------------------------

    def add_practitioners(self) -> None:
        for number, spec in enumerate(PRACTITIONERS):
            practitioner_id = self.new_id("practitioners")
            self.practitioners[spec.key] = practitioner_id
            first_nine = "1" + "".join(self.rng.choices("0123456789", k=8))
            stamp = iso(datetime(2025, 1, 6, 9, tzinfo=UTC) + timedelta(hours=number))
            resource: Resource = {
                "id": practitioner_id,
                "firstName": spec.first,
                "lastName": spec.last,
                "gender": spec.gender,
                "npi": first_nine + npi_check_digit(first_nine),
                "specialty": spec.specialty,
                "email": f"{_ascii(spec.first)}.{_ascii(spec.last)}@clinic.example.org",
                "phone": f"+44 113 496 0{number:03d}",
                "active": spec.active,
                "createdAt": stamp,
                "updatedAt": stamp,
            }
            if spec.prefix:
                resource["prefix"] = list(spec.prefix)
            if spec.suffix:
                resource["suffix"] = list(spec.suffix)
            self.data["practitioners"].append(resource)

    def add_patient(self, index: int, spec: PatientSpec) -> None:
        rng = self.rng
        patient_id = FIXED_PATIENT_ID if index == 0 else self.new_id("patients")
        self.used.add(patient_id)
        self.patient_ids.append(patient_id)
        profile = PROFILES[spec.profile]
        full_name = " ".join(p for p in (spec.first, spec.middle, spec.last) if p)
        stamp = iso(datetime(2025, 2, 3, 8, tzinfo=UTC) + timedelta(hours=7 * index))
        patient: Resource = {
            "id": patient_id,
            "fullName": full_name,
            "firstName": spec.first,
        }
        if spec.middle:
            patient["middleName"] = spec.middle
        patient.update(
            {
                "lastName": spec.last,
                "gender": spec.gender,
                "birthDate": spec.birth,
                "email": f"{_ascii(spec.first)}.{_ascii(spec.last)}@example.net",
                "phone": f"+44 7700 900{100 + index:03d}",
                "active": spec.active,
                "address": {
                    "line": [f"{rng.randint(2, 180)} {rng.choice(STREETS)}"],
                    "city": spec.city,
                    "postalCode": f"{POSTCODES[spec.city]} {rng.randint(1, 9)}"
                    f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}",
                    "country": spec.country,
                },
                "generalPractitionerId": self.practitioners["fm"],
                "createdAt": stamp,
                "updatedAt": stamp,
            }
        )
        self.data["patients"].append(patient)
        self.add_visits(index, patient_id, spec, profile)

    def choose_panels(self, spec: PatientSpec, profile: Profile) -> list[str]:
        panels = [*profile.panels, *spec.panels]
        total = sum(len(PANELS[p].members) for p in panels)
        extras = list(EXTRA_PANELS)
        self.rng.shuffle(extras)
        for extra in extras:
            if total >= 10 and self.rng.random() < 0.5:
                break
            size = len(PANELS[extra].members)
            if extra in panels or total + size > 30:
                continue
            panels.append(extra)
            total += size
        assert 10 <= total <= 30, (spec.first, total)
        return panels

    def add_visits(self, index: int, patient_id: str, spec: PatientSpec, profile: Profile) -> None:
        rng = self.rng
        panels = self.choose_panels(spec, profile)
        repeated = len(set(panels)) < len(panels)
        count = max(rng.randint(1, 4), 2 if repeated else 1)
        span_days = (LAST_DAY - FIRST_DAY).days
        days = sorted(rng.sample(range(span_days), count))
        in_progress = index in (8, 12)  # two patients are being seen right now
        visits: list[_Visit] = []
        clinician = self.practitioners[CLINICIAN_FOR_PROFILE[spec.profile]]
        for number, day in enumerate(days):
            last = number == count - 1
            if last and in_progress:
                day = span_days - 1
            visit_class = rng.choices(("AMB", "EMER", "IMP"), weights=(70, 15, 15))[0]
            start = FIRST_DAY + timedelta(
                days=day, hours=rng.randint(7, 15), minutes=rng.choice((0, 15, 30, 45))
            )
            if visit_class == "AMB":
                end = start + timedelta(minutes=rng.choice((20, 30, 45)))
                kind, location, practitioner = (
                    rng.choice(AMB_TYPES),
                    rng.choice(AMB_LOCATIONS),
                    clinician,
                )
                collected = start + timedelta(minutes=rng.randint(5, 15))
            elif visit_class == "EMER":
                end = start + timedelta(hours=rng.randint(3, 8))
                kind, location = "emergency", f"Emergency Department, Bay {rng.randint(1, 12)}"
                practitioner = self.practitioners["ed"]
                collected = start + timedelta(minutes=rng.randint(15, 50))
            else:
                end = start + timedelta(days=rng.randint(2, 6), hours=rng.randint(0, 6))
                kind, location = "admission", f"Ward {rng.randint(3, 9)}{rng.choice('ABC')}"
                practitioner = self.practitioners["im"]
                collected = start + timedelta(hours=rng.randint(1, 20))
            status = "in-progress" if last and in_progress else "finished"
            encounter: Resource = {
                "id": self.new_id("encounters"),
                "status": status,
                "class": visit_class,
                "patientId": patient_id,
                "practitionerId": practitioner,
                "type": kind,
                "period": {"start": iso(start)}
                if status == "in-progress"
                else {"start": iso(start), "end": iso(end)},
                "location": location,
                "reasonCode": profile.reason,
                "diagnosis": [{"condition": profile.diagnosis, "use": "billing", "rank": 1}],
                "serviceProvider": "ClinikAPI Sandbox General Hospital",
                "participants": [{"practitionerId": practitioner, "role": "primary performer"}],
                "createdAt": iso(start),
                "updatedAt": iso(start if status == "in-progress" else end),
            }
            if status == "finished":
                encounter["lengthMinutes"] = min(10080, int((end - start).total_seconds() // 60))
            self.data["encounters"].append(encounter)
            visits.append(_Visit(encounter, collected, [], spec.gender == "female"))
        for position, panel in enumerate(panels):
            visits[position % len(visits)].panels.append(panel)
        for visit in visits:
            for panel in visit.panels:
                self.add_panel(patient_id, profile, visit, PANELS[panel])
        self.visits[index] = visits

    def specimen_for(self, patient_id: str, visit: _Visit, specimen_type: str) -> str:
        existing = visit.specimens.get(specimen_type)
        if existing:
            return existing
        received = visit.collected + timedelta(minutes=20 + self.rng.randint(0, 25))
        specimen: Resource = {
            "id": self.new_id("specimens"),
            "patientId": patient_id,
            "status": "available",
            "type": specimen_type,
            "receivedTime": iso(received),
            "collection": {
                "collectorId": self.practitioners["lab"],
                "collectedDateTime": iso(visit.collected),
                "method": "Surgical excision"
                if specimen_type == "tissue"
                else "Venipuncture"
                if specimen_type != "urine"
                else "Clean catch",
                "bodySite": "Sigmoid colon"
                if specimen_type == "tissue"
                else "Antecubital fossa"
                if specimen_type != "urine"
                else "Urethra",
            },
            "container": [{"description": CONTAINERS[specimen_type]}],
            "createdAt": iso(received),
            "updatedAt": iso(received),
        }
        self.data["specimens"].append(specimen)
        visit.specimens[specimen_type] = specimen["id"]
        return str(specimen["id"])

    def add_panel(self, patient_id: str, profile: Profile, visit: _Visit, panel: Panel) -> None:
        rng = self.rng
        specimen_id = self.specimen_for(patient_id, visit, panel.specimen)
        preliminary = visit.encounter["status"] == "in-progress"
        issued = visit.collected + timedelta(minutes=rng.randint(45, 180))
        ids: list[str] = []
        for code in panel.members:
            analyte = ANALYTES[code]
            observation: Resource = {
                "id": self.new_id("observations"),
                "status": "preliminary" if preliminary else "final",
                "code": {"system": LOINC, "code": code, "display": analyte.display},
                "patientId": patient_id,
                "encounterId": visit.encounter["id"],
                "performerId": self.practitioners["lab"],
                "specimenId": specimen_id,
                "category": "laboratory",
                "effectiveDateTime": iso(visit.collected),
                "issued": iso(issued),
            }
            observation.update(self.result(analyte, profile, female=visit.female))
            observation["createdAt"] = iso(issued)
            observation["updatedAt"] = iso(issued)
            self.data["observations"].append(observation)
            ids.append(str(observation["id"]))
        visit.observations.setdefault(panel.name, ids)

    def result(self, analyte: Analyte, profile: Profile, *, female: bool) -> Resource:
        if analyte.qualitative:
            positive = analyte.code in profile.positive
            return {
                "valueCodeableConcept": dict(POSITIVE if positive else NEGATIVE),
                "interpretation": "A" if positive else "N",
                "referenceRange": {"text": analyte.range_text or "Negative"},
            }
        low_gen, high_gen = profile.values.get(analyte.code, analyte.normal)
        if female and analyte.female is not None and analyte.code not in profile.values:
            span = analyte.female[1] - analyte.female[0]
            low_gen, high_gen = analyte.female[0] + span * 0.12, analyte.female[1] - span * 0.12
        value = self.rng.uniform(low_gen, high_gen)
        if analyte.steps:
            value = min(analyte.steps, key=lambda step: abs(step - value))
        value = round(value, analyte.decimals)
        number: float | int = int(value) if analyte.decimals == 0 else value
        low, high = reference_limits(analyte, female=female)
        reference: Resource = {}
        if low is not None:
            reference["low"] = {"value": low, "unit": analyte.unit}
        if high is not None:
            reference["high"] = {"value": high, "unit": analyte.unit}
        if analyte.range_text:
            reference["text"] = analyte.range_text
        return {
            "valueQuantity": {
                "value": number,
                "unit": analyte.unit,
                "system": UCUM,
                "code": analyte.unit,
            },
            "interpretation": interpretation(analyte, value, female=female),
            "referenceRange": reference,
        }

    # -- released reports --------------------------------------------------------------------------

    def add_reports(self) -> None:
        by_name = {f"{p.first} {p.last}": i for i, p in enumerate(PATIENTS)}
        c = self.practitioners
        pdf_lines = [
            "ClinikAPI sandbox - CBC panel - Blood by Automated count",
            "Patient: Amara N. Okafor, born 1984-11-09",
            "Microcytic hypochromic anaemia. Iron studies advised.",
        ]
        cbc_pdf = base64.b64encode(report_pdf(pdf_lines)).decode("ascii")
        self.report(
            by_name["Amara Okafor"],
            "cbc",
            0,
            "final",
            c["haem"],
            "Microcytic hypochromic anaemia; white cell and platelet counts unremarkable. "
            "Iron studies advised.",
            [("271737000", "Anemia")],
            forms=[{"contentType": "application/pdf", "title": "CBC report", "data": cbc_pdf}],
        )
        self.report(
            by_name["Amara Okafor"],
            "cbc",
            1,
            "preliminary",
            c["haem"],
            "Persistent microcytic anaemia; awaiting haematology review.",
            [],
        )
        self.report(
            by_name["José Álvarez"],
            "a1c",
            0,
            "final",
            c["endo"],
            "HbA1c above target, consistent with suboptimally controlled type 2 diabetes.",
            [("44054006", "Type 2 diabetes mellitus")],
        )
        self.report(
            by_name["Chinedu Okafor"],
            "bmp",
            0,
            "final",
            c["renal"],
            "Raised creatinine and urea with reduced eGFR, in keeping with known CKD.",
            [("433144002", "Chronic kidney disease stage 3")],
        )
        self.report(
            by_name["Siobhán O'Connor"],
            "lipid",
            0,
            "final",
            c["im"],
            "Raised total and LDL cholesterol with low HDL.",
            [("55822004", "Hyperlipidemia")],
        )
        self.report(
            by_name["Grace Mensah"],
            "thyroid",
            0,
            "preliminary",
            c["endo"],
            "Raised TSH with low free T4, suggests primary hypothyroidism.",
            [("40930008", "Hypothyroidism")],
        )
        self.report(
            by_name["Kwame Mensah"],
            "bmp",
            0,
            "final",
            c["renal"],
            "Critical potassium telephoned to the ward. Renal function markedly reduced.",
            [("14140009", "Hyperkalemia")],
        )
        self.report(
            by_name["Linh Nguyen"],
            "cbc",
            0,
            "final",
            c["haem"],
            "Severe isolated thrombocytopenia; film review recommended.",
            [("302215000", "Thrombocytopenic disorder")],
        )
        self.report(
            by_name["Zoë Lefèvre"],
            "ua",
            0,
            "final",
            c["fm"],
            "Dipstick urinalysis within normal limits.",
            [("281900007", "No abnormality detected")],
        )
        self.report(
            by_name["Rajesh Iyer"],
            "coag",
            0,
            "amended",
            c["haem"],
            "Amended: INR within the therapeutic range for warfarin; no dose change.",
            [],
        )
        self.imaging_and_pathology(by_name["Kwame Mensah"], by_name["Marco D'Angelo"])

    def report(
        self,
        patient: int,
        panel_name: str,
        occurrence: int,
        status: str,
        interpreter: str,
        conclusion: str,
        codes: list[tuple[str, str]],
        *,
        forms: list[Resource] | None = None,
    ) -> None:
        matches = [v for v in self.visits[patient] if panel_name in v.observations]
        visit = matches[occurrence]
        panel = PANELS[panel_name]
        released = visit.collected + timedelta(hours=4 + self.rng.randint(0, 20))
        lab: Resource = {
            "id": self.new_id("labs"),
            "status": status,
            "code": {"system": LOINC, "code": panel.code, "display": panel.display},
            "category": "LAB",
            "patientId": self.patient_ids[patient],
            "encounterId": visit.encounter["id"],
            "effectiveDateTime": iso(visit.collected),
            "resultIds": list(visit.observations[panel_name]),
            "conclusion": conclusion,
            "performer": self.practitioners["lab"],
            "resultsInterpreter": interpreter,
            "specimenIds": [visit.specimens[panel.specimen]],
        }
        if codes:
            lab["conclusionCodes"] = [{"system": SNOMED, "code": c, "display": d} for c, d in codes]
        if forms:
            lab["presentedForm"] = forms
        lab["createdAt"] = iso(released)
        lab["updatedAt"] = iso(released + timedelta(days=1) if status == "amended" else released)
        self.data["labs"].append(lab)

    def imaging_and_pathology(self, radiology_patient: int, pathology_patient: int) -> None:
        visit = self.visits[radiology_patient][0]
        read_at = visit.collected + timedelta(hours=2)
        self.data["labs"].append(
            {
                "id": self.new_id("labs"),
                "status": "final",
                "code": dict(XR_CHEST),
                "category": "RAD",
                "patientId": self.patient_ids[radiology_patient],
                "encounterId": visit.encounter["id"],
                "effectiveDateTime": iso(visit.collected),
                "conclusion": "Small left pleural effusion. No focal consolidation. "
                "Heart size at the upper limit of normal.",
                "conclusionCodes": [
                    {"system": SNOMED, "code": "60046008", "display": "Pleural effusion"}
                ],
                "performer": self.practitioners["rad"],
                "resultsInterpreter": self.practitioners["rad"],
                "presentedForm": [
                    {
                        "contentType": "application/pdf",
                        "title": "Chest radiograph report",
                        "url": "https://files.clinic.example.org/reports/xr-chest.pdf",
                    }
                ],
                "createdAt": iso(read_at),
                "updatedAt": iso(read_at),
            }
        )
        visit = self.visits[pathology_patient][-1]
        tissue = self.specimen_for(self.patient_ids[pathology_patient], visit, "tissue")
        signed = visit.collected + timedelta(days=3)
        self.data["labs"].append(
            {
                "id": self.new_id("labs"),
                "status": "final",
                "code": dict(SURGICAL_PATHOLOGY),
                "category": "PAT",
                "patientId": self.patient_ids[pathology_patient],
                "encounterId": visit.encounter["id"],
                "effectiveDateTime": iso(visit.collected),
                "conclusion": "Sigmoid colon polyp: tubular adenoma with low-grade dysplasia, "
                "completely excised.",
                "conclusionCodes": [
                    {"system": SNOMED, "code": "428054006", "display": "Adenomatous polyp of colon"}
                ],
                "performer": self.practitioners["path"],
                "resultsInterpreter": self.practitioners["path"],
                "specimenIds": [tissue],
                "createdAt": iso(signed),
                "updatedAt": iso(signed),
            }
        )


def _ascii(name: str) -> str:
    """Lower-case ASCII form of a name for e-mail addresses."""
    import unicodedata

    table = str.maketrans({"ø": "o", "Ø": "O", "ı": "i", "'": "", " ": "", "-": ""})
    decomposed = unicodedata.normalize("NFKD", name.translate(table))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
