"""Changing a released report: amend, correct, append, complete or cancel it (DESIGN
"lifecycle").

A released report never changes in place. An amendment starts a new draft version from the
released one, with its kind and reason recorded; the new version is signed (and reviewed, if
`CLINIKUI_AMENDMENTS_NEED_REVIEW`) like any report and then sent as `PATCH /v1/labs/{id}` with
the new status and the complete new lists (CONTRACT §11.4). The released version, its
signatures and its signed PDF stay as they were.

A completion is the same path for a report released early (registered, partial, preliminary):
its new version has status `final`, may be signed unchanged (the preliminary result confirmed),
is signed "authored" and reviewed like any final report (`CLINIKUI_REVIEW_REQUIRED`), and
completes the one ClinikAPI report instead of leaving a second one for the same order.

A cancellation is the same path without the editing: reason and password, then `PATCH` with
status `cancelled`.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from reports import audit, clinikapi, diffs, services
from reports.models import (
    Amendment,
    Report,
    ReportState,
    ReportVersion,
    Signature,
    SignatureMeaning,
    Submission,
    SubmissionState,
    VersionKind,
)
from reports.payload import (
    AMENDMENT_STATUSES,
    EARLY_STATUSES,
    FIELD_LABELS,
    Problem,
    ReportContent,
    check_payload,
    preview_payload,
)
from reports.roles import has_role_permission

# What ClinikAPI cannot change in a released report (CONTRACT §11.4). A report with the wrong
# patient, code, category, encounter or specimens is cancelled and written again instead.
LOCKED_FIELDS: Final = ("patient_id", "encounter_id", "code", "category", "specimen_ids")
# A PATCH can set these but cannot empty them (an absent key leaves the stored value alone).
_CANNOT_CLEAR: Final = ("performer", "results_interpreter", "effective")
# Lists a PATCH always carries in full: ClinikAPI replaces a list wholesale, and a list left out
# would keep what was released (so removing the last item must be sent as an empty list).
_PATCH_LISTS: Final = ("resultIds", "conclusionCodes", "presentedForm")


class AmendmentRefused(Exception):
    """The amendment or cancellation cannot be done now; the message says why."""


# --- reading -----------------------------------------------------------------------------------


def open_amendment(report: Report) -> Amendment | None:
    return (
        Amendment.objects.select_related("released_version")
        .filter(report=report, released_at__isnull=True, discarded_at__isnull=True)
        .first()
    )


def released_submission(report: Report) -> Submission | None:
    """The release ClinikAPI now holds: the newest one that was sent."""
    return (
        report.submissions.filter(state=SubmissionState.SENT)
        .select_related("version")
        .defer("pdf", "payload")
        .order_by("-sent_at", "-pk")
        .first()
    )


def is_early_release(released: Submission | None) -> bool:
    """Whether the release ClinikAPI holds (`released_submission`) went out before its results
    were complete (registered, partial, preliminary): such a report is completed as final."""
    return released is not None and released.version.content.get("status") in EARLY_STATUSES


def report_problems(report: Report, content: ReportContent) -> list[Problem]:
    """Everything that stops `content` from being signed for this report, at its fields."""
    return problems_for(content, open_amendment(report) if report.remote_id else None)


def problems_for(content: ReportContent, amendment: Amendment | None) -> list[Problem]:
    if amendment is None:
        return check_payload(content)
    released = ReportContent.from_json(amendment.released_version.content)
    # The status is the amendment's own (a completion's is final): nothing else can be signed.
    status = amendment.status
    return [
        *check_payload(content, statuses={status: diffs.STATUS_LABELS[status]}),
        *amendment_problems(amendment.kind, released, content),
    ]


def amendment_problems(kind: str, released: ReportContent, content: ReportContent) -> list[Problem]:
    """What an amendment of `kind` may not do to the released content."""
    problems = []
    before, after = diffs.describe(released), diffs.describe(content)
    for name in LOCKED_FIELDS:
        if before[name] != after[name]:
            problems.append(
                Problem(
                    name,
                    f"{FIELD_LABELS[name]} cannot change in a released report. Cancel the "
                    "report and write a new one instead.",
                )
            )
    for name in _CANNOT_CLEAR:
        if before[name] and not after[name]:
            problems.append(
                Problem(name, "ClinikAPI cannot empty this field of a released report.")
            )
    if kind == Amendment.Kind.APPENDED:
        problems.extend(_appended_problems(released, content))
    unchanged = (content.to_json() | {"status": released.status}) == released.to_json()
    # A completion may confirm the early release as it stands; only its status changes then.
    may_stay = (Amendment.Kind.CANCELLED, Amendment.Kind.COMPLETION)
    if kind not in may_stay and unchanged:
        problems.append(Problem("report", "The amendment does not change anything yet."))
    return problems


def _appended_problems(released: ReportContent, content: ReportContent) -> list[Problem]:
    """`appended` adds to the report and changes nothing that was there (FHIR R4)."""
    problems = []
    message = "An appended report may only add; use Amended or Corrected to change this."
    if not content.conclusion.startswith(released.conclusion):
        problems.append(Problem("conclusion", message))
    for name in ("result_ids", "conclusion_codes", "attachments"):
        if not set(getattr(released, name)) <= set(getattr(content, name)):
            problems.append(Problem(name, message))
    for name in ("effective", "performer", "results_interpreter"):
        if getattr(released, name) and getattr(released, name) != getattr(content, name):
            problems.append(Problem(name, message))
    return problems


def changes_since_release(amendment: Amendment, content: ReportContent) -> list[diffs.FieldChange]:
    """The amendment's changes to the released version, field by field."""
    return diffs.compare(ReportContent.from_json(amendment.released_version.content), content)


def patch_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The `PATCH /v1/labs/{id}` body of a signed amendment: what ClinikAPI lets an update
    change, with every list complete (CONTRACT §11.4). `payload` is the full create body with
    its files, as the release worker builds it."""
    body = {key: value for key, value in payload.items() if key in clinikapi.LAB_UPDATABLE_FIELDS}
    for key in _PATCH_LISTS:
        body.setdefault(key, [])
    body.setdefault("conclusion", "")
    return body


def preview_body(content: ReportContent, amendment: Amendment | None) -> dict[str, Any]:
    """The body as pages show it: the `POST` of a new report, or an amendment's `PATCH`."""
    shown = preview_payload(content)
    if amendment is None:
        return shown
    body = patch_body(shown)
    if not body["presentedForm"]:
        # The signed report PDF is added when it is sent, as for a new report (pages say so).
        del body["presentedForm"]
    return body


# --- changing ----------------------------------------------------------------------------------


def start_amendment(
    *, report_id: int, user: User, kind: str, reason: str, explanation: str
) -> Amendment:
    """A new draft version of the released report, to be changed, signed and sent again.

    Only the author amends (the composer is theirs); supervisors see the amendment in review.
    Raises AmendmentRefused.
    """
    if kind not in AMENDMENT_STATUSES:
        raise AmendmentRefused("Choose amended, corrected or appended.")
    if reason == Amendment.Reason.RESULTS_COMPLETE:
        raise AmendmentRefused("Complete the report as final to give this reason.")
    return _start(report_id, user, kind, reason, explanation, version_kind=VersionKind.AMENDMENT)


def start_completion(*, report_id: int, user: User, explanation: str) -> Amendment:
    """A new draft version of a report released early, with status `final`, to complete it.

    Its results, conclusion, codes, files and practitioners may change or stay as released;
    what an amendment may not change stays locked. Only the author completes, and only a report
    whose release ClinikAPI holds is registered, partial or preliminary. Raises AmendmentRefused.
    """
    return _start(
        report_id,
        user,
        Amendment.Kind.COMPLETION,
        Amendment.Reason.RESULTS_COMPLETE,
        explanation,
        version_kind=VersionKind.COMPLETION,
    )


def _start(
    report_id: int,
    user: User,
    kind: str,
    reason: str,
    explanation: str,
    *,
    version_kind: VersionKind,
) -> Amendment:
    is_completion = kind == Amendment.Kind.COMPLETION
    with transaction.atomic():
        report = Report.objects.select_for_update().get(pk=report_id)
        if report.author_id != user.pk:
            raise AmendmentRefused(
                "Only the author of a report can complete it as final."
                if is_completion
                else "Only the author of a report can amend it."
            )
        if is_completion:
            status = _released_version(report).content.get("status")
            if status not in EARLY_STATUSES:
                raise AmendmentRefused(
                    f"This report was released as {status}; only a registered, partial or "
                    "preliminary report is completed as final. Amend it instead."
                )
        amendment, version = _begin(
            report, user, kind, reason, explanation, version_kind=version_kind
        )
        report.state = ReportState.DRAFT
        report.head = version.number
        report.updated_at = timezone.now()
        report.save(update_fields=["state", "head", "updated_at"])
        audit.record(
            "amendment.started",
            actor=user,
            report=report,
            version=version.number,
            kind=kind,
            reason=reason,
            released_version=amendment.released_version.number,
            released_status=amendment.released_version.content.get("status"),
        )
    return amendment


def discard_amendment(*, report_id: int, user: User) -> Amendment:
    """Give up an amendment (or completion) that was not signed yet: the report is as released
    again. Returns the amendment discarded. Raises AmendmentRefused."""
    with transaction.atomic():
        report = Report.objects.select_for_update().get(pk=report_id)
        amendment = open_amendment(report)
        if amendment is None or report.state != ReportState.DRAFT:
            raise AmendmentRefused("There is no unsigned amendment to discard.")
        # Its author, or a supervisor (so that an absent author cannot block a cancellation).
        is_author = report.author_id == user.pk and has_role_permission(user, "compose_report")
        if not is_author and not has_role_permission(user, "verify_report"):
            raise AmendmentRefused("Only the author or a supervisor can discard an amendment.")
        amendment.discarded_at = timezone.now()
        amendment.save(update_fields=["discarded_at"])
        report.state = ReportState.RELEASED
        # The report reads as released again; the discarded versions stay in its history.
        report.head = amendment.released_version.number
        report.updated_at = timezone.now()
        report.save(update_fields=["state", "head", "updated_at"])
        audit.record(
            "amendment.discarded",
            actor=user,
            report=report,
            version=amendment.released_version.number,
            kind=amendment.kind,
        )
    return amendment


def cancel_report(
    *,
    request: HttpRequest,
    report_id: int,
    user: User,
    password: str,
    reason: str,
    explanation: str,
    token: uuid.UUID,
    version_number: int,
) -> Signature:
    """Sign a cancellation (its own version, status `cancelled`) and queue the PATCH.

    `version_number` is the released version the signer was shown: if another release came
    since, nothing is signed. The author or a supervisor may cancel. Raises WrongPassword,
    AmendmentRefused.
    """
    from reports import workflow  # workflow imports this module for its review rules

    existing = Signature.objects.filter(token=token).first()
    if existing is not None:
        if existing.report_id != report_id or existing.signer_id != user.pk:
            raise AmendmentRefused("This form was already used. Open the report again.")
        return existing
    report = Report.objects.get(pk=report_id)
    if not workflow.password_is_correct(request, user, password):
        with transaction.atomic():
            audit.record("signature.refused", actor=user, report=report, reason="wrong password")
        raise workflow.WrongPassword
    try:
        with transaction.atomic():
            return _cancel(
                report_id,
                user=user,
                reason=reason,
                explanation=explanation,
                token=token,
                version_number=version_number,
            )
    except IntegrityError:
        existing = Signature.objects.filter(token=token).first()
        if existing is None:
            raise
        return existing


def _cancel(
    report_id: int,
    *,
    user: User,
    reason: str,
    explanation: str,
    token: uuid.UUID,
    version_number: int,
) -> Signature:
    from reports import workflow

    report = Report.objects.select_for_update().get(pk=report_id)
    is_author = report.author_id == user.pk and has_role_permission(user, "compose_report")
    if not is_author and not has_role_permission(user, "verify_report"):
        raise AmendmentRefused("Only the author or a supervisor can cancel a report.")
    if _released_version(report).number != version_number:
        raise AmendmentRefused(
            "The report was released again after you opened it. Read it again before you cancel it."
        )
    _, version = _begin(
        report,
        user,
        Amendment.Kind.CANCELLED,
        reason,
        explanation,
        version_kind=VersionKind.CANCELLATION,
    )
    signature = workflow.create_signature(version, user, SignatureMeaning.CANCELLED, token=token)
    audit.record(
        "report.cancellation_signed",
        actor=user,
        report=report,
        version=version.number,
        reason=reason,
        content_hash=signature.content_hash,
    )
    report.head = version.number
    report.state = ReportState.RELEASING
    # queue_release records the version on the open amendment, this cancellation.
    workflow.queue_release(
        report=report, version=version, signature=signature, token=token, actor=user
    )
    report.updated_at = timezone.now()
    report.save(update_fields=["head", "state", "updated_at"])
    return signature


def _begin(
    report: Report,
    user: User,
    kind: str,
    reason: str,
    explanation: str,
    *,
    version_kind: VersionKind,
) -> tuple[Amendment, ReportVersion]:
    """The amendment row and its first version: the released content with the new status."""
    released = _released_version(report)
    amendment = Amendment.objects.create(
        report=report,
        kind=kind,
        reason=reason,
        explanation=explanation,
        released_version=released,
        started_by=user,
    )
    content = released.content | {"status": amendment.status}
    return amendment, _new_version(report, content, kind=version_kind, user=user)


def _released_version(report: Report) -> ReportVersion:
    if report.state != ReportState.RELEASED or not report.remote_id:
        raise AmendmentRefused(
            f"This report is {report.get_state_display().lower()}; only a released report "
            "can be amended, completed or cancelled."
        )
    submission = released_submission(report)
    if submission is None:  # released implies a sent submission; refuse rather than guess
        raise AmendmentRefused("ClinikUI has no record of this report's release.")
    return submission.version


def _new_version(
    report: Report, content: dict[str, Any], *, kind: VersionKind, user: User
) -> ReportVersion:
    number = services.next_version_number(report)
    return ReportVersion.objects.create(
        report=report, number=number, kind=kind, content=content, based_on=report.head, author=user
    )
