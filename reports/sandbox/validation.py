"""Request-body validation for the ClinikAPI sandbox (CONTRACT.md §10-§16 field tables).

The real API validates with a Zod-style schema, so the sandbox mirrors its habits: one issue per
problem, each formatted ``"<dotted.path>: <constraint>"`` (``presentedForm.0.data: Invalid
base64``), never echoing the submitted value; unknown keys are stripped (the schemas are not
strict), except where the sandbox's optional strict mode says otherwise.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

LAB_STATUSES = (
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
)
LAB_CATEGORIES = ("LAB", "RAD", "PAT")
OBSERVATION_STATUSES = (
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
)
OBSERVATION_CATEGORIES = ("vital-signs", "laboratory", "social-history", "exam")
ENCOUNTER_STATUSES = (
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
)
ENCOUNTER_CLASSES = ("AMB", "IMP", "EMER", "HH", "VR")
GENDERS = ("male", "female", "other", "unknown")
SPECIMEN_STATUSES = ("available", "unavailable", "unsatisfactory")

# Strict mode only (§11.7): the usual forward path, then amendments, cancellation at any point.
LAB_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "registered": frozenset({"registered", "partial", "preliminary", "final", "cancelled"}),
    "partial": frozenset({"partial", "preliminary", "final", "cancelled"}),
    "preliminary": frozenset({"preliminary", "final", "cancelled"}),
    "final": frozenset({"final", "amended", "corrected", "appended", "cancelled"}),
    "amended": frozenset({"amended", "corrected", "appended", "cancelled"}),
    "corrected": frozenset({"amended", "corrected", "appended", "cancelled"}),
    "appended": frozenset({"amended", "corrected", "appended", "cancelled"}),
    "cancelled": frozenset({"cancelled"}),
}

_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _add(issues: list[str], path: str, text: str) -> None:
    issues.append(f"{path or 'body'}: {text}")


def type_name(value: object) -> str:
    """The JSON type of a value, as the error text names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "unknown"


class Rule:
    """One constraint on a JSON value; ``check`` returns the cleaned value."""

    __slots__ = ()
    expected = "unknown"

    def accepts(self, value: object) -> bool:
        """Whether the value has the JSON type this rule is about."""
        raise NotImplementedError

    def check(self, value: Any, path: str, issues: list[str]) -> Any:
        if not self.accepts(value):
            _add(issues, path, f"Expected {self.expected}, received {type_name(value)}")
            return value
        return self.refine(value, path, issues)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        return value


@dataclass(frozen=True, slots=True)
class Str(Rule):
    max: int | None = None
    min: int | None = None
    expected = "string"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if self.min is not None and len(value) < self.min:
            _add(issues, path, f"String must contain at least {self.min} character(s)")
        if self.max is not None and len(value) > self.max:
            _add(issues, path, f"String must contain at most {self.max} character(s)")
        return value


@dataclass(frozen=True, slots=True)
class Enum(Rule):
    values: tuple[str, ...]
    expected = "string"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if value not in self.values:
            _add(issues, path, "Invalid enum value")
        return value


@dataclass(frozen=True, slots=True)
class DateTime(Rule):
    """ISO 8601 instant in UTC with a ``Z`` suffix; offsets are refused (CONTRACT §22.11)."""

    expected = "string"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if not is_datetime(value):
            _add(issues, path, "Invalid datetime")
        return value


@dataclass(frozen=True, slots=True)
class Date(Rule):
    expected = "string"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if not is_date(value):
            _add(issues, path, "Invalid date")
        return value


@dataclass(frozen=True, slots=True)
class Email(Rule):
    max: int = 254
    expected = "string"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if len(value) > self.max:
            _add(issues, path, f"String must contain at most {self.max} character(s)")
        elif not _EMAIL_RE.match(value):
            _add(issues, path, "Invalid email")
        return value


@dataclass(frozen=True, slots=True)
class Base64(Rule):
    """Standard base64 with padding, no ``data:`` prefix and no line breaks (§10)."""

    expected = "string"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if not is_base64(value):
            _add(issues, path, "Invalid base64")
        return value


@dataclass(frozen=True, slots=True)
class Num(Rule):
    min: float | None = None
    max: float | None = None
    integer: bool = False
    expected = "number"

    def accepts(self, value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            _add(issues, path, "Expected integer, received float")
        if self.min is not None and value < self.min:
            _add(issues, path, f"Number must be greater than or equal to {self.min:g}")
        if self.max is not None and value > self.max:
            _add(issues, path, f"Number must be less than or equal to {self.max:g}")
        return value


@dataclass(frozen=True, slots=True)
class Bool(Rule):
    expected = "boolean"

    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Arr(Rule):
    item: Rule
    max: int | None = None
    min: int | None = None
    expected = "array"

    def accepts(self, value: object) -> bool:
        return isinstance(value, list)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        if self.min is not None and len(value) < self.min:
            _add(issues, path, f"Array must contain at least {self.min} element(s)")
        if self.max is not None and len(value) > self.max:
            _add(issues, path, f"Array must contain at most {self.max} element(s)")
        return [self.item.check(item, _join(path, i), issues) for i, item in enumerate(value)]


@dataclass(frozen=True, slots=True)
class Field:
    rule: Rule
    required: bool = False


def req(rule: Rule) -> Field:
    return Field(rule, required=True)


def opt(rule: Rule) -> Field:
    return Field(rule)


@dataclass(frozen=True, slots=True)
class Obj(Rule):
    """A JSON object; unknown keys are dropped unless ``strict`` (then one issue each)."""

    fields: Mapping[str, Field]
    strict: bool = False
    passthrough: bool = False
    expected = "object"

    def accepts(self, value: object) -> bool:
        return isinstance(value, dict)

    def refine(self, value: Any, path: str, issues: list[str]) -> Any:
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            spec = self.fields.get(key)
            if spec is None:
                if self.passthrough:
                    cleaned[key] = item
                elif self.strict:
                    _add(issues, _join(path, key), "Unrecognized key")
                continue
            cleaned[key] = spec.rule.check(item, _join(path, key), issues)
        for key, spec in self.fields.items():
            if spec.required and key not in value:
                _add(issues, _join(path, key), "Required")
        return cleaned


@dataclass(frozen=True, slots=True)
class OneOf(Rule):
    """The first alternative whose JSON type matches decides; otherwise ``Invalid input``."""

    options: tuple[Rule, ...]

    def accepts(self, value: object) -> bool:
        return any(option.accepts(value) for option in self.options)

    def check(self, value: Any, path: str, issues: list[str]) -> Any:
        for option in self.options:
            if option.accepts(value):
                return option.check(value, path, issues)
        _add(issues, path, "Invalid input")
        return value


# -- shared value shapes (§10) ----------------------------------------------------------------

ID = Str(min=1, max=128)
CODING = Obj({"system": opt(Str(max=500)), "code": req(Str(min=1)), "display": opt(Str())})
CODE_INPUT = OneOf((Str(min=1), CODING))
PERIOD = Obj({"start": opt(DateTime()), "end": opt(DateTime())})
QUANTITY = Obj({"value": req(Num()), "unit": opt(Str()), "system": opt(Str()), "code": opt(Str())})
ADDRESS = Obj(
    {
        "line": opt(Arr(Str(max=200), max=5)),
        "city": opt(Str(max=100)),
        "state": opt(Str(max=100)),
        "postalCode": opt(Str(max=20)),
        "country": opt(Str(max=100)),
    }
)
# Unknown attachment keys (size, hash, creation, language) are stripped, never rejected (§22.23).
ATTACHMENT = Obj(
    {
        "contentType": req(Str(min=1)),
        "data": opt(Base64()),
        "url": opt(Str(min=1)),
        "title": opt(Str()),
    }
)
PHOTO = Obj({"url": opt(Str()), "data": opt(Base64()), "contentType": opt(Str())})
LANGUAGE = Obj({"language": req(Str(min=1, max=100)), "preferred": opt(Bool())})
NAME_PART = Arr(Str(max=50), max=5)

# -- resources ---------------------------------------------------------------------------------

LAB_FIELDS: dict[str, Field] = {
    "status": req(Enum(LAB_STATUSES)),
    "code": req(CODE_INPUT),
    "patientId": req(ID),
    # The published schema types category as a free string (§22.28); strict mode checks the enum.
    "category": opt(Str()),
    "encounterId": opt(ID),
    "effectiveDateTime": opt(DateTime()),
    "effectivePeriod": opt(PERIOD),
    "resultIds": opt(Arr(ID)),
    "conclusion": opt(Str(max=5000)),
    "conclusionCodes": opt(Arr(CODING)),
    "performer": opt(Str()),
    "resultsInterpreter": opt(Str()),
    "specimenIds": opt(Arr(ID)),
    "presentedForm": opt(Arr(ATTACHMENT)),
    "basedOn": opt(Arr(ID)),
    "media": opt(Arr(Obj({"comment": opt(Str()), "linkId": req(ID)}))),
}
LAB_UPDATABLE = (
    "status",
    "conclusion",
    "conclusionCodes",
    "resultIds",
    "resultsInterpreter",
    "presentedForm",
    "effectiveDateTime",
    "effectivePeriod",
    "performer",
)

PATIENT_FIELDS: dict[str, Field] = {
    "firstName": req(Str(min=1, max=100)),
    "lastName": req(Str(min=1, max=100)),
    "middleName": opt(Str(max=100)),
    "prefix": opt(NAME_PART),
    "suffix": opt(NAME_PART),
    "email": opt(Email()),
    "phone": opt(Str(max=20)),
    "gender": opt(Enum(GENDERS)),
    "birthDate": opt(Date()),
    "active": opt(Bool()),
    "address": opt(ADDRESS),
    "maritalStatus": opt(Str(max=50)),
    "photo": opt(PHOTO),
    "contact": opt(
        Arr(
            Obj(
                {
                    "relationship": opt(Str(max=100)),
                    "firstName": opt(Str(max=100)),
                    "lastName": opt(Str(max=100)),
                    "phone": opt(Str(max=20)),
                    "email": opt(Email()),
                }
            ),
            max=10,
        )
    ),
    "languages": opt(Arr(LANGUAGE, max=20)),
    "generalPractitionerId": opt(ID),
}

ENCOUNTER_FIELDS: dict[str, Field] = {
    "status": req(Enum(ENCOUNTER_STATUSES)),
    "class": req(Enum(ENCOUNTER_CLASSES)),
    "patientId": req(ID),
    "practitionerId": opt(ID),
    "period": opt(PERIOD),
    "lengthMinutes": opt(Num(min=0, max=10080, integer=True)),
    "location": opt(Str(max=200)),
    "diagnosis": opt(
        Arr(
            Obj(
                {
                    "condition": req(Str(min=1, max=200)),
                    "use": opt(Str(max=50)),
                    "rank": opt(Num(min=1, integer=True)),
                }
            ),
            max=20,
        )
    ),
    "type": opt(Str(max=200)),
    "serviceType": opt(Str(max=200)),
    "priority": opt(Str(max=50)),
    "reasonCode": opt(OneOf((Str(max=500), Arr(Str(max=500), max=20)))),
    "serviceProvider": opt(Str(max=200)),
    "participants": opt(Arr(Obj({"practitionerId": req(ID), "role": opt(Str(max=100))}), max=50)),
    "appointmentId": opt(ID),
    "basedOnId": opt(ID),
    "partOfId": opt(ID),
    "hospitalization": opt(Obj({}, passthrough=True)),
}

OBSERVATION_FIELDS: dict[str, Field] = {
    "status": req(Enum(OBSERVATION_STATUSES)),
    "code": req(CODE_INPUT),
    "patientId": req(ID),
    "encounterId": opt(ID),
    "performerId": opt(ID),
    "specimenId": opt(ID),
    "deviceId": opt(ID),
    "category": opt(Enum(OBSERVATION_CATEGORIES)),
    "effectiveDateTime": opt(DateTime()),
    "issued": opt(DateTime()),
    "valueQuantity": opt(QUANTITY),
    "valueString": opt(Str(max=2000)),
    "valueCodeableConcept": opt(CODING),
    "component": opt(
        Arr(
            Obj(
                {
                    "code": req(CODE_INPUT),
                    "valueQuantity": opt(QUANTITY),
                    "valueString": opt(Str(max=2000)),
                }
            ),
            max=20,
        )
    ),
    "interpretation": opt(Str(max=10)),
    "referenceRange": opt(
        Obj(
            {
                "low": opt(Obj({"value": req(Num()), "unit": opt(Str())})),
                "high": opt(Obj({"value": req(Num()), "unit": opt(Str())})),
                "text": opt(Str(max=500)),
            }
        )
    ),
    "bodySite": opt(Str(max=200)),
    "method": opt(Str(max=200)),
    "note": opt(Str(max=2000)),
}
OBSERVATION_UPDATABLE = (
    "status",
    "valueQuantity",
    "valueString",
    "interpretation",
    "note",
    "issued",
)

PRACTITIONER_FIELDS: dict[str, Field] = {
    "firstName": req(Str(min=1, max=100)),
    "lastName": req(Str(min=1, max=100)),
    "prefix": opt(NAME_PART),
    "suffix": opt(NAME_PART),
    "email": opt(Email()),
    "phone": opt(Str(max=20)),
    "gender": opt(Enum(GENDERS)),
    "birthDate": opt(Date()),
    "npi": opt(Str(max=20)),
    "specialty": opt(Str(max=200)),
    "qualifications": opt(
        Arr(
            Obj(
                {
                    "name": req(Str(min=1, max=200)),
                    "issuer": opt(Str(max=200)),
                    "period": opt(PERIOD),
                    "identifier": opt(Str(max=100)),
                }
            ),
            max=20,
        )
    ),
    "languages": opt(Arr(LANGUAGE, max=20)),
    "address": opt(ADDRESS),
    "photo": opt(PHOTO),
    "active": opt(Bool()),
}

SPECIMEN_FIELDS: dict[str, Field] = {
    "patientId": req(ID),
    "status": opt(Enum(SPECIMEN_STATUSES)),
    "type": opt(Str(max=200)),
    "receivedTime": opt(Str(max=50)),
    "parentIds": opt(Arr(ID, max=10)),
    "requestIds": opt(Arr(ID, max=10)),
    "collection": opt(
        Obj(
            {
                "collectorId": opt(ID),
                "collectedDateTime": opt(Str(max=50)),
                "quantity": opt(Obj({"value": req(Num()), "unit": opt(Str(max=50))})),
                "method": opt(Str(max=200)),
                "bodySite": opt(Str(max=200)),
            }
        )
    ),
    "container": opt(
        Arr(
            Obj(
                {
                    "description": opt(Str(max=500)),
                    "type": opt(Str(max=200)),
                    "capacity": opt(QUANTITY),
                    "specimenQuantity": opt(QUANTITY),
                }
            ),
            max=20,
        )
    ),
    "condition": opt(Arr(Str(max=200), max=10)),
    "note": opt(Str(max=5000)),
}
SPECIMEN_UPDATABLE = ("status", "note", "condition")


@dataclass(frozen=True, slots=True)
class ResourceSchema:
    fields: Mapping[str, Field]
    updatable: tuple[str, ...] = ()

    def create_rule(self) -> Obj:
        return Obj(self.fields)

    def patch_rule(self) -> Obj:
        # A PATCH may send any subset of the updatable keys; none is required, others are dropped.
        return Obj({key: opt(self.fields[key].rule) for key in self.updatable})


SCHEMAS: Mapping[str, ResourceSchema] = {
    "labs": ResourceSchema(LAB_FIELDS, LAB_UPDATABLE),
    "patients": ResourceSchema(PATIENT_FIELDS),
    "encounters": ResourceSchema(ENCOUNTER_FIELDS),
    "observations": ResourceSchema(OBSERVATION_FIELDS, OBSERVATION_UPDATABLE),
    "practitioners": ResourceSchema(PRACTITIONER_FIELDS),
    "specimens": ResourceSchema(SPECIMEN_FIELDS, SPECIMEN_UPDATABLE),
}


def validate_create(
    kind: str, body: object, *, strict: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Check a create body; return the cleaned object (unknown keys dropped) and the issues."""
    schema = SCHEMAS[kind]
    issues: list[str] = []
    cleaned = schema.create_rule().check(body, "", issues)
    if not isinstance(cleaned, dict):
        return {}, issues
    if strict and kind == "labs":
        issues.extend(_strict_lab_issues(cleaned))
    return cleaned, issues


def validate_patch(
    kind: str, body: object, *, strict: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Check a partial update; non-updatable and unknown keys are ignored, or issues if strict."""
    schema = SCHEMAS[kind]
    issues: list[str] = []
    cleaned = schema.patch_rule().check(body, "", issues)
    if not isinstance(cleaned, dict):
        return {}, issues
    if strict:
        for key in body if isinstance(body, dict) else ():
            if key in schema.updatable:
                continue
            text = "Field cannot be updated" if key in schema.fields else "Unrecognized key"
            issues.append(f"{key}: {text}")
        if kind == "labs":
            issues.extend(_strict_lab_issues(cleaned))
    return cleaned, issues


def _strict_lab_issues(lab: Mapping[str, Any]) -> list[str]:
    issues: list[str] = []
    category = lab.get("category")
    if isinstance(category, str) and category not in LAB_CATEGORIES:
        issues.append("category: Invalid enum value")
    forms = lab.get("presentedForm")
    if isinstance(forms, list):
        for index, form in enumerate(forms):
            if isinstance(form, dict) and "data" not in form and "url" not in form:
                issues.append(f"presentedForm.{index}: Either data or url is required")
    return issues


def transition_issue(old: str, new: str) -> str | None:
    """Strict mode: the issue text for a forbidden lab status change, else None."""
    allowed = LAB_TRANSITIONS.get(old)
    if allowed is None or new in allowed:
        return None
    return "status: Invalid status transition"


def is_datetime(value: str) -> bool:
    if not _DATETIME_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value[:19])
    except ValueError:
        return False
    return True


def is_date(value: str) -> bool:
    if not _DATE_RE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_base64(value: str) -> bool:
    if len(value) % 4 or not _BASE64_RE.match(value):
        return False
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True
