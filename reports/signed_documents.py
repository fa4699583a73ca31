"""The signed report as a document: its results read from ClinikAPI, rendered to PDF.

The worker calls this before the first attempt of a release; the PDF is stored on the submission
and sent, unchanged, with every attempt, so reconciliation can recognise it by its title.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils import timezone

from reports import clinikapi, diffs
from reports.models import Amendment, Signature, Submission
from reports.payload import ReportContent
from reports.signed_pdf import (
    ChangeSection,
    ResultRow,
    SignatureLine,
    SignedReportDocument,
    pdf_title,
    render_signed_pdf,
)

# The patient's results are read with one search; results the search does not show yet (its
# index lags, CONTRACT §6) are read by id. More than this many by-id reads means something is off.
MAX_READS_BY_ID = 50


class ResultsRefused(Exception):
    """A chosen result does not exist or belongs to another patient (RELIABILITY REC-07)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.issues = [{"field": "resultIds", "message": message}]


def read_results(
    api: clinikapi.ClinikAPI, submission: Submission
) -> tuple[clinikapi.Observation, ...]:
    """The report's results, in the order chosen, each checked to be the patient's own.

    Raises ResultsRefused, and the client's errors when ClinikAPI cannot answer.
    """
    content = ReportContent.from_json(submission.version.content)
    wanted = content.result_ids
    if not wanted:
        return ()
    found = {
        observation.id: observation
        for observation in clinikapi.iter_all(
            api.search_observations, patient_id=content.patient_id
        )
        if observation.id in wanted
    }
    missing = [result_id for result_id in wanted if result_id not in found]
    if len(missing) > MAX_READS_BY_ID:
        raise ResultsRefused(f"{len(missing)} of the chosen results were not found.")
    for result_id in missing:
        try:
            found[result_id] = api.get_observation(result_id)
        except clinikapi.NotFound as exc:
            raise ResultsRefused(f"Result {result_id} no longer exists in ClinikAPI.") from exc
    strangers = [o.id for o in found.values() if o.patient_id != content.patient_id]
    if strangers:
        raise ResultsRefused(
            "These results belong to another patient: " + ", ".join(sorted(strangers)) + "."
        )
    return tuple(found[result_id] for result_id in wanted)


def document_for(
    submission: Submission, observations: Sequence[clinikapi.Observation]
) -> SignedReportDocument:
    report = submission.report
    version = submission.version
    content = ReportContent.from_json(version.content)
    signatures = Signature.objects.filter(version=version).order_by("signed_at", "pk")
    return SignedReportDocument(
        report_number=report.number,
        version_number=version.number,
        patient_name=report.patient_name,
        patient_birth_date=report.patient_birth_date,
        patient_id=report.patient_id,
        code=content.code,
        category=content.category,
        status=content.status,
        effective=content.effective,
        time_zone=timezone.get_default_timezone_name(),
        encounter_id=content.encounter_id,
        results=tuple(_row(observation) for observation in observations),
        specimen_ids=content.specimen_ids,
        performer=content.performer,
        results_interpreter=content.results_interpreter,
        conclusion=content.conclusion,
        conclusion_codes=content.conclusion_codes,
        attachments=content.attachments,
        signatures=tuple(
            SignatureLine(
                printed_name=signature.printed_name,
                username=signature.signer.get_username(),
                meaning=signature.get_meaning_display(),
                signed_at=signature.signed_at,
                content_hash=signature.content_hash,
                version_number=version.number,
            )
            for signature in signatures.select_related("signer")
        ),
        changes=_changes(submission, content),
    )


def _changes(submission: Submission, content: ReportContent) -> ChangeSection | None:
    """For an amendment, a completion or a cancellation: what changed since the released
    version, and why."""
    amendment = (
        Amendment.objects.select_related("released_version")
        .filter(version=submission.version_id)
        .first()
    )
    if amendment is None:
        return None
    released = ReportContent.from_json(amendment.released_version.content)
    return ChangeSection(
        since_version=amendment.released_version.number,
        kind=amendment.get_kind_display(),
        reason=f"{amendment.get_reason_display()}: {amendment.explanation}",
        changes=tuple(
            (change.label, change.before, change.after)
            for change in diffs.compare(released, content)
            if change.field != "status"
        ),
        completes_status=released.status if amendment.is_completion else "",
    )


def render(
    submission: Submission, observations: Sequence[clinikapi.Observation]
) -> tuple[bytes, str]:
    document = document_for(submission, observations)
    return render_signed_pdf(document), pdf_title(document)


def _row(observation: clinikapi.Observation) -> ResultRow:
    quantity = observation.value_quantity
    return ResultRow(
        name=observation.code.label if observation.code else observation.id,
        value=(
            f"{quantity.comparator or ''}{quantity.value}"
            if quantity is not None
            else observation.value_display
        ),
        unit=(quantity.unit or "") if quantity is not None else "",
        reference_range=observation.reference_range_text,
        flag=observation.interpretation or "",
        is_critical=observation.is_critical,
        is_abnormal=observation.is_abnormal,
        effective=observation.effective_time,
        observation_id=observation.id,
    )
