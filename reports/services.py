"""What a clinician can do. Views call these; these call ClinikAPI and our models."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from reports import audit, clinikapi
from reports.models import Attachment, Report, ReportVersion, VersionKind
from reports.payload import AttachedFile, ReportContent
from reports.pdf_validation import MAX_ATTACHMENT_BYTES, PDFRejected, validate_pdf

logger = logging.getLogger(__name__)

# How many rows a look-up page shows at most; a longer list means the search was too broad.
PATIENT_SEARCH_LIMIT = 50
CHART_ROWS_LIMIT = 500


class APIUnavailable(Exception):
    """ClinikAPI could not answer; the message is fit for a clinician, with a reference."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class PatientNotFound(Exception):
    """ClinikAPI has no patient with this id (or it belongs to another organisation)."""


@dataclass(frozen=True, slots=True)
class PatientSearchResult:
    patients: tuple[clinikapi.Patient, ...]
    is_truncated: bool


@dataclass(frozen=True, slots=True)
class PatientChart:
    """One patient with their encounters (newest first) and observations (newest first)."""

    patient: clinikapi.Patient
    encounters: tuple[clinikapi.Encounter, ...]
    observations: tuple[clinikapi.Observation, ...]

    @property
    def critical_count(self) -> int:
        return sum(1 for observation in self.observations if observation.is_critical)


def find_patients(*, name: str = "", birth_date: date | None = None) -> PatientSearchResult:
    """Patients whose first or last name contains `name` and who were born on `birth_date`.

    Raises APIUnavailable.
    """
    with _api_errors():
        found = list(
            clinikapi.iter_all(
                get_api().search_patients,
                limit=PATIENT_SEARCH_LIMIT + 1,
                name=name or None,
                birth_date=birth_date,
            )
        )
    found.sort(key=lambda patient: (patient.last_name.casefold(), patient.first_name.casefold()))
    return PatientSearchResult(
        patients=tuple(found[:PATIENT_SEARCH_LIMIT]),
        is_truncated=len(found) > PATIENT_SEARCH_LIMIT,
    )


def get_patient_chart(*, patient_id: str) -> PatientChart:
    """The patient with their encounters and observations, read-only.

    Raises PatientNotFound, APIUnavailable.
    """
    patient = get_patient_chart_header(patient_id=patient_id)
    api = get_api()
    with _api_errors():
        encounters = list(
            clinikapi.iter_all(
                api.search_encounters,
                limit=CHART_ROWS_LIMIT,
                patient_id=patient.id,
                sort="-date",
            )
        )
        observations = list(
            clinikapi.iter_all(
                api.search_observations,
                limit=CHART_ROWS_LIMIT,
                patient_id=patient.id,
                sort="-date",
            )
        )
    # Search order is the API's business; ours is newest first whatever it sends.
    encounters.sort(key=lambda e: e.start_time or _EPOCH, reverse=True)
    observations.sort(key=lambda o: o.effective_time or _EPOCH, reverse=True)
    return PatientChart(
        patient=patient, encounters=tuple(encounters), observations=tuple(observations)
    )


def get_api() -> clinikapi.ClinikAPI:
    """The process-wide API client; raises APIUnavailable when it is misconfigured."""
    try:
        return clinikapi.get_client()
    except clinikapi.Misconfigured as exc:
        logger.error("ClinikAPI client is misconfigured: %s", exc.code or "see settings")
        raise APIUnavailable(
            "ClinikAPI is not configured correctly on this server. An administrator has to "
            "check its address and key."
        ) from exc


# Sorts undated rows last.
_EPOCH = datetime.min.replace(tzinfo=UTC)


@contextmanager
def _api_errors() -> Iterator[None]:
    """Turns the client's failures into APIUnavailable with a message fit for a clinician."""
    try:
        yield
    except (clinikapi.NotFound, clinikapi.RequestRefused):
        raise
    except clinikapi.ClinikAPIError as exc:
        logger.warning(
            "ClinikAPI call failed: %s (request id %s)", type(exc).__name__, exc.request_id or "-"
        )
        raise APIUnavailable(_explain(exc), request_id=exc.request_id) from exc


def _explain(exc: clinikapi.ClinikAPIError) -> str:
    if isinstance(exc, clinikapi.Unauthorized | clinikapi.Forbidden | clinikapi.Misconfigured):
        return (
            "ClinikAPI refused ClinikUI's credentials. An administrator has to check the "
            "API key; nothing you entered was lost."
        )
    if isinstance(exc, clinikapi.QuotaExceeded):
        return (
            "ClinikUI has used up its ClinikAPI quota for this month. Look-ups will work "
            "again when the quota resets; an administrator can raise it."
        )
    if isinstance(exc, clinikapi.RateLimited):
        return "ClinikAPI is busy right now. Try again in a minute."
    return (
        "ClinikAPI cannot be reached right now. Try again in a moment; the rest of "
        "ClinikUI keeps working."
    )


# --- drafts ------------------------------------------------------------------------------------


class ReportNotEditable(Exception):
    """The report is past the draft stage; it changes only through an amendment."""


class DraftConflict(Exception):
    """The draft changed since the editor loaded it; the editor's text was kept as `kept`."""

    def __init__(self, *, current: ReportVersion, kept: ReportVersion) -> None:
        super().__init__(
            f"Someone saved version {current.number} of this report after you opened it. "
            f"Your text was kept as version {kept.number}; compare the two and carry on from "
            "the one you want."
        )
        self.current = current
        self.kept = kept


def start_report(*, author: User, patient_id: str) -> Report:
    """A new draft for the patient, read from ClinikAPI so the banner shows who it is.

    Raises PatientNotFound, APIUnavailable.
    """
    patient = get_patient_chart_header(patient_id=patient_id)
    with transaction.atomic():
        report = Report.objects.create(
            author=author,
            patient_id=patient.id,
            patient_name=patient.full_name,
            patient_birth_date=patient.birth_date,
            head=1,
        )
        ReportVersion.objects.create(
            report=report,
            number=1,
            kind=VersionKind.STARTED,
            content=ReportContent(patient_id=patient.id).to_json(),
            author=author,
        )
        audit.record("draft.started", actor=author, report=report, version=1)
    return report


def get_patient_chart_header(*, patient_id: str) -> clinikapi.Patient:
    """The patient alone (no encounters or results). Raises PatientNotFound, APIUnavailable."""
    with _api_errors():
        try:
            return get_api().get_patient(patient_id)
        except (clinikapi.NotFound, clinikapi.RequestRefused) as exc:
            raise PatientNotFound(f"No patient with id {patient_id} was found.") from exc


def save_draft(
    *,
    report_id: int,
    author: User,
    base_version: int,
    content: ReportContent,
    kind: VersionKind = VersionKind.SAVED,
    action: str = "",
) -> ReportVersion:
    """Add a version with `content`, unless it says exactly what the current version says.

    `action` names the change in the audit trail (default: from `kind`).

    `base_version` is the version the editor started from; if the report has moved on since,
    the content is kept as a conflict copy and DraftConflict is raised (RELIABILITY CON-01).
    Raises ReportNotEditable, DraftConflict.
    """
    with transaction.atomic():
        report = Report.objects.select_for_update().get(pk=report_id)
        if not report.is_editable:
            raise ReportNotEditable("This report is no longer a draft and cannot be edited.")
        if content.patient_id != report.patient_id:
            raise ValueError("a draft's content must stay with the report's patient")
        head = report.versions.get(number=report.head)
        data = content.to_json()
        if data == head.content:
            return head
        number = next_version_number(report)
        is_stale = base_version != report.head
        version = ReportVersion.objects.create(
            report=report,
            number=number,
            kind=VersionKind.CONFLICT if is_stale else kind,
            content=data,
            based_on=base_version,
            author=author,
        )
        if not is_stale:
            report.head = number
        report.updated_at = timezone.now()
        report.save(update_fields=["head", "updated_at"])
        # draft.saved, draft.autosaved, draft.restored, or the caller's name for the change.
        event = action or f"draft.{VersionKind(kind).value}"
        if is_stale:
            event = "draft.conflict_kept"
        audit.record(
            event,
            actor=author,
            report=report,
            version=number,
            based_on=base_version,
        )
    if is_stale:
        # Raised after the commit, so the losing text is kept, never dropped.
        raise DraftConflict(current=head, kept=version)
    return version


def restore_version(
    *, report_id: int, author: User, number: int, base_version: int
) -> ReportVersion:
    """Make an earlier version (or a kept conflict copy) the current one, as a new version.

    Raises ReportNotEditable, DraftConflict, ReportVersion.DoesNotExist.
    """
    old = ReportVersion.objects.get(report_id=report_id, number=number)
    return save_draft(
        report_id=report_id,
        author=author,
        base_version=base_version,
        content=ReportContent.from_json(old.content),
        kind=VersionKind.RESTORED,
    )


def next_version_number(report: Report) -> int:
    latest = report.versions.aggregate(latest=Max("number"))["latest"]
    return int(latest or 0) + 1


@dataclass(frozen=True, slots=True)
class ComposerOptions:
    """What the composer's pickers offer for one patient, read from ClinikAPI."""

    encounters: tuple[clinikapi.Encounter, ...]
    observations: tuple[clinikapi.Observation, ...]
    specimens: tuple[clinikapi.Specimen, ...]
    practitioners: tuple[clinikapi.Practitioner, ...]


# The composer's pickers are read once and reused for this long, so that autosaving every few
# seconds does not cost four ClinikAPI searches each time (the rate limit is per organisation).
COMPOSER_OPTIONS_SECONDS = 120


def get_composer_options(*, patient_id: str) -> ComposerOptions:
    """The patient's encounters, results and specimens, and the active practitioners.

    Raises APIUnavailable (the composer then keeps the saved choices and says why).
    """
    key = f"composer-options:{patient_id}"
    options: ComposerOptions | None = cache.get(key)
    if options is None:
        options = _read_composer_options(patient_id=patient_id)
        cache.set(key, options, COMPOSER_OPTIONS_SECONDS)
    return options


def _read_composer_options(*, patient_id: str) -> ComposerOptions:
    api = get_api()
    with _api_errors():
        encounters = list(
            clinikapi.iter_all(api.search_encounters, limit=CHART_ROWS_LIMIT, patient_id=patient_id)
        )
        observations = list(
            clinikapi.iter_all(
                api.search_observations, limit=CHART_ROWS_LIMIT, patient_id=patient_id
            )
        )
        specimens = list(
            clinikapi.iter_all(api.search_specimens, limit=CHART_ROWS_LIMIT, patient_id=patient_id)
        )
        practitioners = list(clinikapi.iter_all(api.search_practitioners, limit=CHART_ROWS_LIMIT))
    encounters.sort(key=lambda e: e.start_time or _EPOCH, reverse=True)
    observations.sort(key=lambda o: o.effective_time or _EPOCH, reverse=True)
    practitioners.sort(key=lambda p: (p.last_name or "").casefold())
    return ComposerOptions(
        encounters=tuple(encounters),
        observations=tuple(observations),
        specimens=tuple(specimens),
        practitioners=tuple(practitioners),
    )


# --- attachments -----------------------------------------------------------------------------


class AttachmentRefused(Exception):
    """The file cannot be attached; the message says why, for the clinician."""


def attach_pdf(*, report_id: int, author: User, filename: str, data: bytes) -> ReportVersion:
    """Check an uploaded PDF and add it to the current version of the draft, as a new version.

    Adding a file changes nothing anyone typed, so it applies to whatever version is current
    rather than to the one the page was loaded from. Raises AttachmentRefused, ReportNotEditable.
    """
    report = Report.objects.get(pk=report_id)
    content = ReportContent.from_json(report.versions.get(number=report.head).content)
    used = sum(item.size for item in content.attachments)
    try:
        # In a resource-limited child process (RELIABILITY FILE-03), outside any transaction.
        checked = validate_pdf(data, filename=filename, max_bytes=MAX_ATTACHMENT_BYTES - used)
    except PDFRejected as exc:
        logger.info("Attachment refused for report %s: %s", report.pk, exc.code)
        raise AttachmentRefused(str(exc)) from exc
    if any(item.sha256 == checked.sha256 for item in content.attachments):
        raise AttachmentRefused(f"{checked.filename} is attached to this report already.")
    Attachment.objects.get_or_create(
        report=report,
        sha256=checked.sha256,
        defaults={
            "filename": checked.filename,
            "size": checked.size,
            "page_count": checked.page_count,
            "content": data,
            "uploaded_by": author,
        },
    )
    attached = AttachedFile(checked.sha256, checked.filename, checked.size)
    return _change_files(
        report_id=report.pk, author=author, add=attached, action="attachment.added"
    )


def remove_pdf(*, report_id: int, author: User, sha256: str) -> ReportVersion:
    """A new version without the file (the file itself stays, for the history).

    Raises ReportNotEditable.
    """
    return _change_files(
        report_id=report_id, author=author, remove=sha256, action="attachment.removed"
    )


def _change_files(
    *,
    report_id: int,
    author: User,
    action: str,
    add: AttachedFile | None = None,
    remove: str = "",
) -> ReportVersion:
    with transaction.atomic():
        # Locked, so the version read here is still current when save_draft checks it.
        report = Report.objects.select_for_update().get(pk=report_id)
        content = ReportContent.from_json(report.versions.get(number=report.head).content)
        files = [item for item in content.attachments if item.sha256 != remove]
        if add is not None and all(item.sha256 != add.sha256 for item in files):
            files.append(add)
        return save_draft(
            report_id=report.pk,
            author=author,
            base_version=report.head,
            content=replace(content, attachments=tuple(files)),
            action=action,
        )


def attachment_bytes(report: Report) -> Callable[[str], bytes]:
    """Reads the report's attached files (one query, on first use) by SHA-256."""
    files: dict[str, bytes] = {}

    def read(sha256: str) -> bytes:
        if not files:
            files.update(
                (digest, bytes(content))
                for digest, content in report.attachments.values_list("sha256", "content")
            )
        return files[sha256]

    return read
