"""The signed report as a PDF: the document ClinikAPI receives as the report's own presentedForm.

`render_signed_pdf()` fills `templates/reports/signed_report_pdf.html` (autoescaped: conclusions
and names are typed by people) and lays it out with WeasyPrint and `pdf_assets/signed_report.css`.
Everything the PDF shows is in that HTML: the fetcher refuses every URL, so no image, stylesheet
or font is ever fetched over the network or read from disk on a document's behalf. The only
fonts are the system's (DejaVu, which bin/test installs), subset to the characters used.

The output depends only on the document: no current time, no random identifier; the PDF's
creation date is the last signature's time. Its size is capped (`SIGNED_PDF_MAX_BYTES`) because
it travels in the same 1 MiB request body as the clinician's own attachments, whose budget
(`reports.pdf_validation.MAX_ATTACHMENT_BYTES`) was computed with that cap taken off.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final, NoReturn
from zoneinfo import ZoneInfo

import weasyprint  # type: ignore[import-untyped]
from django.template.loader import render_to_string

from reports.payload import CATEGORIES, LOINC, SNOMED_CT, AttachedFile, CodedConcept
from reports.pdf_validation import SIGNED_PDF_MAX_BYTES, human_size

__all__ = [
    "SIGNED_PDF_MAX_BYTES",
    "ChangeSection",
    "ResultRow",
    "SignatureLine",
    "SignedPDFTooLarge",
    "SignedReportDocument",
    "pdf_title",
    "render_signed_pdf",
    "title_for",
]

TEMPLATE: Final = "reports/signed_report_pdf.html"
STYLESHEET: Final = Path(__file__).with_name("pdf_assets") / "signed_report.css"
_SYSTEM_NAMES: Final = {LOINC: "LOINC", SNOMED_CT: "SNOMED CT"}


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One result as the signed report prints it (already worded: value, unit, range, flag)."""

    name: str
    value: str
    unit: str
    reference_range: str
    flag: str
    is_critical: bool
    is_abnormal: bool
    effective: datetime | None
    observation_id: str


@dataclass(frozen=True, slots=True)
class SignatureLine:
    """One signature's manifestation: who, what it means, when, and which content it covers."""

    printed_name: str
    username: str
    meaning: str
    signed_at: datetime
    content_hash: str
    version_number: int


@dataclass(frozen=True, slots=True)
class ChangeSection:
    """What an amendment changed since the released version: (field label, before, after)."""

    since_version: int
    kind: str
    reason: str
    changes: tuple[tuple[str, str, str], ...] = ()
    # For a completion as final: the status of the early release it completes ("preliminary").
    completes_status: str = ""


@dataclass(frozen=True, slots=True)
class SignedReportDocument:
    """Everything the signed PDF shows, for one signed version of a report."""

    report_number: str
    version_number: int
    patient_name: str
    patient_birth_date: date | None
    patient_id: str
    code: CodedConcept | None
    category: str
    status: str
    # Any aware datetime; shown in `time_zone` (an IANA name such as "Europe/Berlin").
    effective: datetime | None
    time_zone: str
    encounter_id: str
    results: tuple[ResultRow, ...]
    specimen_ids: tuple[str, ...]
    performer: str
    results_interpreter: str
    conclusion: str
    conclusion_codes: tuple[CodedConcept, ...]
    attachments: tuple[AttachedFile, ...]
    signatures: tuple[SignatureLine, ...]
    changes: ChangeSection | None = None


class SignedPDFTooLarge(Exception):
    """The rendered PDF would not fit beside the attachments in ClinikAPI's request body."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"The signed report would be a {human_size(size, round_up=True)} PDF; it can be at "
            f"most {human_size(SIGNED_PDF_MAX_BYTES)} to fit ClinikAPI's limit. Shorten the "
            "conclusion or attach fewer results."
        )
        self.size = size


def pdf_title(document: SignedReportDocument) -> str:
    """The presentedForm title and the PDF's own title: local report number and version."""
    return title_for(document.report_number, document.version_number)


def title_for(report_number: str, version_number: int) -> str:
    return f"ClinikUI report {report_number} v{version_number} (signed)"


def render_signed_pdf(document: SignedReportDocument) -> bytes:
    """The signed report as PDF bytes. Raises `SignedPDFTooLarge`."""
    data = _pdf_from_html(render_to_string(TEMPLATE, _context(document)))
    if len(data) > SIGNED_PDF_MAX_BYTES:
        raise SignedPDFTooLarge(len(data))
    return data


# --- what the template shows ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ShownResult:
    row: ResultRow
    time: str


@dataclass(frozen=True, slots=True)
class _ShownFile:
    file: AttachedFile
    size: str


@dataclass(frozen=True, slots=True)
class _ShownSignature:
    line: SignatureLine
    time: str


def _context(document: SignedReportDocument) -> dict[str, object]:
    zone = ZoneInfo(document.time_zone)
    signed = [line.signed_at for line in document.signatures]
    return {
        "document": document,
        "title": pdf_title(document),
        # The PDF's creation date: when it was last signed, never the time it was rendered.
        "created": _w3c_utc(max(signed)) if signed else "",
        "zone": zone.key,
        "birth_date": document.patient_birth_date.isoformat()
        if document.patient_birth_date
        else "",
        "code": _concept_text(document.code) if document.code else "",
        "category": _category_text(document.category),
        "effective": _local_text(document.effective, zone) if document.effective else "",
        "results": [
            _ShownResult(row, _local_text(row.effective, zone) if row.effective else "")
            for row in document.results
        ],
        "critical_count": sum(1 for row in document.results if row.is_critical),
        "conclusion_codes": [_concept_text(concept) for concept in document.conclusion_codes],
        "attachments": [_ShownFile(item, human_size(item.size)) for item in document.attachments],
        "signatures": [
            _ShownSignature(line, _local_text(line.signed_at, zone, seconds=True))
            for line in document.signatures
        ],
    }


def _concept_text(concept: CodedConcept) -> str:
    system = _SYSTEM_NAMES.get(concept.system, concept.system)
    if concept.display:
        return f"{concept.display} ({system} {concept.code})"
    return f"{system} {concept.code}"


def _category_text(category: str) -> str:
    name = CATEGORIES.get(category)
    return f"{name} ({category})" if name else category


def _local_text(moment: datetime, zone: ZoneInfo, *, seconds: bool = False) -> str:
    """The wall time in `zone` with the zone's name at that instant: "2026-11-24 08:40 CET"."""
    if moment.utcoffset() is None:
        raise ValueError(f"A naive datetime cannot be shown in a time zone: {moment!r}")
    local = moment.astimezone(zone)
    shown = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{shown} {local.tzname()}"


def _w3c_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- layout -----------------------------------------------------------------------------------


class _RefuseEveryURL(weasyprint.URLFetcher):  # type: ignore[misc]
    """WeasyPrint's fetcher for images, stylesheets, fonts and attachments: refuses them all
    (http, file and data URLs alike), so nothing outside the HTML can reach the PDF."""

    def fetch(self, url: str, headers: object = None) -> NoReturn:
        raise ValueError(f"The signed report PDF loads no external resources (refused {url[:80]})")


# One for the process: it holds no state, and building one sets up urllib's handlers (an SSL
# context with the system's certificates, ~25 ms) that it never uses.
_FETCHER: Final = _RefuseEveryURL()


@functools.cache
def _stylesheet() -> weasyprint.CSS:
    """Parsed once per process (about 10 ms a render otherwise); WeasyPrint only reads it."""
    return weasyprint.CSS(string=STYLESHEET.read_text(encoding="utf-8"), url_fetcher=_FETCHER)


def _pdf_from_html(html: str) -> bytes:
    document = weasyprint.HTML(string=html, url_fetcher=_FETCHER)
    pdf: bytes = document.write_pdf(stylesheets=[_stylesheet()])
    return pdf
