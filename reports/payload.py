"""What a report says, and the exact ClinikAPI body it becomes.

`ReportContent` is the content of one draft version, in ClinikUI's own words (it is what a
`ReportVersion` stores as JSON). `build_payload()` turns it into the `POST /v1/labs` body
(CONTRACT §11.1) through the client's `NewLab`, so the contract's field names live in one place,
and `check_payload()` lists every rule the body breaks, each tied to the composer field a
clinician can fix.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Self

from reports import clinikapi
from reports.pdf_validation import MAX_ATTACHMENT_BYTES, human_size

LOINC: Final = "http://loinc.org"
SNOMED_CT: Final = "http://snomed.info/sct"
MAX_CONCLUSION_CHARS: Final = clinikapi.MAX_CONCLUSION_CHARS
CATEGORIES: Final = {"LAB": "Laboratory", "RAD": "Radiology", "PAT": "Pathology"}
# Statuses a report may be released with before any review (RELIABILITY, DESIGN "lifecycle").
DRAFT_STATUSES: Final = {
    "registered": "Registered",
    "partial": "Partial",
    "preliminary": "Preliminary",
    "final": "Final",
}
# Statuses of a report released before its results are complete (FHIR R4: registered → partial →
# preliminary → final). Such a release is completed as `final` later, not amended.
EARLY_STATUSES: Final = ("registered", "partial", "preliminary")
# The statuses an amendment of a released report is sent with (CONTRACT §11.4, FHIR R4).
AMENDMENT_STATUSES: Final = {
    "amended": "Amended",
    "corrected": "Corrected",
    "appended": "Appended",
}
# FHIR R4 DiagnosticReport requires effective[x] from these statuses on.
_NEEDS_EFFECTIVE: Final = frozenset({"partial", "preliminary", "final", *AMENDMENT_STATUSES})
_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

# The composer's fields, by the plain names clinicians see (DESIGN "Composing").
FIELD_LABELS: Final = {
    "patient_id": "Patient",
    "encounter_id": "Encounter",
    "code": "Report code",
    "category": "Category",
    "status": "Status",
    "effective": "Effective date/time",
    "result_ids": "Results",
    "specimen_ids": "Specimens",
    "performer": "Performer",
    "results_interpreter": "Results interpreter",
    "conclusion": "Conclusion",
    "conclusion_codes": "Conclusion codes",
    "attachments": "Attachments",
}


# Where each field sits on the composer page, so a problem can link to it.
FIELD_ANCHORS: Final = {
    "patient_id": "patient-banner",
    "encounter_id": "div_id_encounter",
    "code": "report-code-field",
    "category": "div_id_category",
    "status": "div_id_status",
    "effective": "div_id_effective",
    "result_ids": "results-field",
    "specimen_ids": "specimens-field",
    "performer": "div_id_performer",
    "results_interpreter": "div_id_results_interpreter",
    "conclusion": "conclusion-field",
    "conclusion_codes": "conclusion-codes-field",
    "attachments": "attachments-field",
}


@dataclass(frozen=True, slots=True)
class CodedConcept:
    system: str
    code: str
    display: str = ""

    def to_api(self) -> clinikapi.Code:
        return clinikapi.Code(self.system, self.code, self.display or None)


@dataclass(frozen=True, slots=True)
class AttachedFile:
    """A PDF a version names; its bytes live in `reports.models.Attachment` under `sha256`."""

    sha256: str
    filename: str
    size: int

    @property
    def title(self) -> str:
        return self.filename.removesuffix(".pdf")


@dataclass(frozen=True, slots=True)
class ReportContent:
    """Everything a clinician has entered in one version of a report."""

    patient_id: str
    encounter_id: str = ""
    code: CodedConcept | None = None
    category: str = ""
    status: str = ""
    # Always UTC; the composer converts from and to the clinician's time zone.
    effective: datetime | None = None
    result_ids: tuple[str, ...] = ()
    specimen_ids: tuple[str, ...] = ()
    performer: str = ""
    results_interpreter: str = ""
    conclusion: str = ""
    conclusion_codes: tuple[CodedConcept, ...] = field(default=())
    attachments: tuple[AttachedFile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["effective"] = _utc_text(self.effective) if self.effective else None
        data["result_ids"] = list(self.result_ids)
        data["specimen_ids"] = list(self.specimen_ids)
        data["conclusion_codes"] = [asdict(c) for c in self.conclusion_codes]
        data["attachments"] = [asdict(a) for a in self.attachments]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        code = data.get("code")
        effective = data.get("effective")
        return cls(
            patient_id=str(data["patient_id"]),
            encounter_id=str(data.get("encounter_id") or ""),
            code=CodedConcept(**code) if code else None,
            category=str(data.get("category") or ""),
            status=str(data.get("status") or ""),
            effective=datetime.fromisoformat(effective) if effective else None,
            result_ids=tuple(data.get("result_ids") or ()),
            specimen_ids=tuple(data.get("specimen_ids") or ()),
            performer=str(data.get("performer") or ""),
            results_interpreter=str(data.get("results_interpreter") or ""),
            conclusion=str(data.get("conclusion") or ""),
            conclusion_codes=tuple(CodedConcept(**c) for c in data.get("conclusion_codes") or ()),
            attachments=tuple(AttachedFile(**a) for a in data.get("attachments") or ()),
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule the body breaks, tied to the composer field that fixes it."""

    field: str
    message: str

    @property
    def label(self) -> str:
        return FIELD_LABELS.get(self.field, self.field)

    @property
    def anchor(self) -> str:
        return FIELD_ANCHORS.get(self.field, "report-form")


# ClinikAPI names fields by their contract names (CONTRACT §7.1: a dotted path such as
# `resultIds.2` or `code.coding[0]`); the composer field each one belongs to.
_API_FIELDS: Final = {
    "patientId": "patient_id",
    "encounterId": "encounter_id",
    "code": "code",
    "category": "category",
    "status": "status",
    "effectiveDateTime": "effective",
    "effectivePeriod": "effective",
    "resultIds": "result_ids",
    "specimenIds": "specimen_ids",
    "performer": "performer",
    "resultsInterpreter": "results_interpreter",
    "conclusion": "conclusion",
    "conclusionCodes": "conclusion_codes",
    "presentedForm": "attachments",
}


def api_problems(issues: list[dict[str, str]]) -> list[Problem]:
    """ClinikAPI's validation issues (as stored from a refused release) at the composer's fields."""
    problems = []
    for issue in issues:
        name = re.split(r"[.\[]", str(issue.get("field", "")), maxsplit=1)[0]
        message = f"ClinikAPI: {issue.get('message') or 'refused this value'}"
        problems.append(Problem(_API_FIELDS.get(name, "report"), message))
    return problems


def build_payload(
    content: ReportContent, *, file_bytes: Callable[[str], bytes] | None = None
) -> dict[str, Any]:
    """The exact JSON body `POST /v1/labs` would receive: only the fields that are set.

    `file_bytes(sha256)` gives an attached PDF's bytes; without it the attachments are left out.
    """
    presented_form: tuple[clinikapi.Attachment, ...] = ()
    if file_bytes is not None:
        presented_form = tuple(
            clinikapi.Attachment(
                content_type="application/pdf",
                title=item.title,
                data=base64.b64encode(file_bytes(item.sha256)).decode("ascii"),
            )
            for item in content.attachments
        )
    lab = clinikapi.NewLab(
        status=content.status,
        code=content.code.to_api() if content.code else "",
        patient_id=content.patient_id,
        category=content.category or None,
        encounter_id=content.encounter_id or None,
        effective_date_time=content.effective,
        result_ids=content.result_ids,
        conclusion=content.conclusion or None,
        conclusion_codes=tuple(c.to_api() for c in content.conclusion_codes),
        performer=content.performer or None,
        results_interpreter=content.results_interpreter or None,
        specimen_ids=content.specimen_ids,
        presented_form=presented_form,
    )
    return lab.to_payload()


def preview_payload(content: ReportContent) -> dict[str, Any]:
    """The body as a page shows it: each file's base64 replaced by its length, which follows
    from the file's size, so showing it reads no file at all."""
    shown = build_payload(content)
    if content.attachments:
        shown["presentedForm"] = [
            {
                "contentType": "application/pdf",
                "title": item.title,
                "data": f"<{4 * math.ceil(item.size / 3):,} characters of base64>",
            }
            for item in content.attachments
        ]
    return shown


def check_payload(
    content: ReportContent, *, statuses: Mapping[str, str] = DRAFT_STATUSES
) -> list[Problem]:
    """Every contract rule (CONTRACT §11.1) and FHIR R4 DiagnosticReport rule the body breaks.

    `statuses` are those this report may be sent with: a new report's, or an amendment's own.
    """
    problems: list[Problem] = []
    if not content.patient_id:
        problems.append(Problem("patient_id", "Choose the patient."))
    elif not _ID.fullmatch(content.patient_id):
        problems.append(Problem("patient_id", "The patient id is not a valid ClinikAPI id."))
    if content.code is None or not content.code.code:
        problems.append(Problem("code", "Choose the report code (LOINC)."))
    elif content.code.system != LOINC:
        problems.append(Problem("code", "The report code must be a LOINC code."))
    if not content.status:
        problems.append(Problem("status", "Choose the status."))
    elif content.status not in statuses:
        names = [name.lower() for name in statuses.values()]
        allowed = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        problems.append(Problem("status", f"The status must be {allowed}."))
    if content.category and content.category not in CATEGORIES:
        problems.append(Problem("category", "The category must be LAB, RAD or PAT."))
    if content.effective is None:
        # FHIR R4 DiagnosticReport requires effective[x] once the status is partial or later.
        if content.status in _NEEDS_EFFECTIVE:
            problems.append(
                Problem("effective", "Enter the effective date/time (when the sample was taken).")
            )
    elif content.effective.utcoffset() is None:
        problems.append(Problem("effective", "The effective date/time has no time zone."))
    for name in ("encounter_id", "performer", "results_interpreter"):
        value = getattr(content, name)
        if value and not _ID.fullmatch(value):
            problems.append(Problem(name, "This is not a valid ClinikAPI id."))
    for name in ("result_ids", "specimen_ids"):
        ids = getattr(content, name)
        if any(not _ID.fullmatch(item) for item in ids):
            problems.append(Problem(name, "One of the chosen items has an invalid id."))
        if len(set(ids)) != len(ids):
            problems.append(Problem(name, "An item is chosen twice."))
    if len(content.conclusion) > MAX_CONCLUSION_CHARS:
        problems.append(
            Problem(
                "conclusion",
                f"The conclusion has {len(content.conclusion):,} characters; "
                f"ClinikAPI accepts at most {MAX_CONCLUSION_CHARS:,}.",
            )
        )
    for concept in content.conclusion_codes:
        if concept.system != SNOMED_CT or not concept.code:
            problems.append(Problem("conclusion_codes", "Conclusion codes must be SNOMED CT."))
            break
    if len({c.code for c in content.conclusion_codes}) != len(content.conclusion_codes):
        problems.append(Problem("conclusion_codes", "A conclusion code is chosen twice."))
    total = sum(item.size for item in content.attachments)
    if total > MAX_ATTACHMENT_BYTES:
        problems.append(
            Problem(
                "attachments",
                f"The attachments add up to {human_size(total, round_up=True)}; together they "
                f"can be at most {human_size(MAX_ATTACHMENT_BYTES)} to fit ClinikAPI's limit.",
            )
        )
    return problems


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
