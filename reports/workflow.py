"""The report's lifecycle after drafting: signing and queueing the release (DESIGN "lifecycle").

Every transition locks the report row, checks its state again, and commits the new state, the
signature, the outbox row and their audit events together (RELIABILITY CON-02, SUB-01, AU-01).
Nothing here talks to ClinikAPI: the release worker (`reports.outbox`) does, later.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from reports import amendments, audit, signing
from reports.models import (
    Amendment,
    Notification,
    Report,
    ReportState,
    ReportVersion,
    Review,
    Signature,
    SignatureMeaning,
    Submission,
)
from reports.payload import AMENDMENT_STATUSES, ReportContent, build_payload

logger = logging.getLogger(__name__)


class SigningRefused(Exception):
    """The report cannot be signed now; the message says why, for the clinician."""


class WrongPassword(SigningRefused):
    """The password given at signing was not the signer's (audited; counts towards lockout)."""

    def __init__(self) -> None:
        super().__init__("The password is not correct. Nothing was signed.")


class TokenReused(Exception):
    """A signing form's one-time token came back with different content (SUB-02: refused)."""


@dataclass(frozen=True, slots=True)
class SignResult:
    report: Report
    signature: Signature
    submission: Submission | None
    # True when this was a repeat of a form already processed (a double click, a resent POST).
    replayed: bool = False


def needs_review(content: ReportContent) -> bool:
    """Whether a supervisor verifies this report before it is released: a final report (a new
    one, or the completion of an early release), and an amendment of a released one, each by
    its own setting. A cancellation is not reviewed."""
    if content.status in AMENDMENT_STATUSES:
        return bool(settings.CLINIKUI_AMENDMENTS_NEED_REVIEW)
    return bool(settings.CLINIKUI_REVIEW_REQUIRED) and content.status == "final"


def signature_meaning(content: ReportContent) -> SignatureMeaning:
    """What the author's signature means (DESIGN "Integrity"): an amendment's is "amended"; a
    report's, a completion's included (it is the final report they write), is "authored"."""
    if content.status in AMENDMENT_STATUSES:
        return SignatureMeaning.AMENDED
    return SignatureMeaning.AUTHORED


def new_form_token() -> uuid.UUID:
    return uuid.uuid4()


def sign_report(
    *,
    request: HttpRequest,
    report_id: int,
    signer: User,
    password: str,
    version_number: int,
    token: uuid.UUID,
) -> SignResult:
    """Sign the report's current version as its author, then release it or send it for review.

    `version_number` is the version the signer was shown; if the report moved on, signing is
    refused so nobody signs text they have not seen. Raises WrongPassword, SigningRefused,
    TokenReused.
    """
    replay = _replay(token, signer=signer, report_id=report_id, version_number=version_number)
    if replay is not None:
        return replay
    if not password_is_correct(request, signer, password):
        with transaction.atomic():
            audit.record(
                "signature.refused",
                actor=signer,
                report=Report.objects.filter(pk=report_id).first(),
                version=version_number,
                reason="wrong password",
            )
        raise WrongPassword
    result = _at_most_once(
        lambda report: _sign(report, signer=signer, version_number=version_number, token=token),
        report_id,
        signer=signer,
        version_number=version_number,
        token=token,
    )
    # The session id is not rotated here, unlike at sign-in: the password re-entry does not change
    # who is signed in, and rotating would make a double click's second POST fail with "session
    # deleted" instead of getting the first one's result.
    return result


def _sign(report: Report, *, signer: User, version_number: int, token: uuid.UUID) -> SignResult:
    if report.author_id != signer.pk:
        raise SigningRefused("Only the author of a report can sign it as its author.")
    if report.state != ReportState.DRAFT:
        raise SigningRefused(
            f"This report is {report.get_state_display().lower()}; it cannot be signed again."
        )
    if report.head != version_number:
        raise SigningRefused(
            f"The report changed after you opened it (it is now version {report.head}). "
            "Read it again before you sign."
        )
    version = report.versions.get(number=report.head)
    if Signature.objects.filter(
        version=version,
        signer=signer,
        meaning__in=[SignatureMeaning.AUTHORED, SignatureMeaning.AMENDED],
    ).exists():
        raise SigningRefused(
            f"You signed version {version.number} already and it came back. Make the changes "
            "asked for; the new version can then be signed."
        )
    content = ReportContent.from_json(version.content)
    problems = amendments.report_problems(report, content)
    if problems:
        raise SigningRefused(
            "The report cannot be signed yet: "
            + " ".join(f"{problem.label}: {problem.message}" for problem in problems)
        )
    meaning = signature_meaning(content)
    signature = create_signature(version, signer, meaning, token=token)
    audit.record(
        "report.signed",
        actor=signer,
        report=report,
        version=version.number,
        meaning=meaning,
        content_hash=signature.content_hash,
    )
    submission = None
    if needs_review(content):
        report.state = ReportState.AWAITING_REVIEW
        audit.record("report.awaiting_review", actor=signer, report=report, version=version.number)
    else:
        report.state = ReportState.RELEASING
        submission = queue_release(
            report=report, version=version, signature=signature, token=token, actor=signer
        )
    report.updated_at = timezone.now()
    report.save(update_fields=["state", "updated_at"])
    signature.refresh_from_db(fields=["signed_at"])
    return SignResult(report=report, signature=signature, submission=submission)


def create_signature(
    version: ReportVersion, signer: User, meaning: SignatureMeaning, *, token: uuid.UUID
) -> Signature:
    """The signature row: who, the name as printed, what it means, and the hash of the signed
    content (21 CFR 11.50); its time is the database's clock. Call inside the transaction."""
    return Signature.objects.create(
        report_id=version.report_id,
        version=version,
        signer=signer,
        printed_name=signer.get_full_name() or signer.get_username(),
        meaning=meaning,
        content_hash=signing.content_hash(version),
        token=token,
    )


def queue_release(
    *,
    report: Report,
    version: ReportVersion,
    signature: Signature,
    token: uuid.UUID,
    actor: User,
) -> Submission:
    """The outbox row that makes the worker send this version; call inside the transaction."""
    body = build_payload(ReportContent.from_json(version.content))
    operation = Submission.Operation.UPDATE if report.remote_id else Submission.Operation.CREATE
    submission = Submission.objects.create(
        report=report,
        version=version,
        signature=signature,
        operation=operation,
        token=token,
        payload=body,
        payload_hash=hashlib.sha256(signing.canonical_json(body)).hexdigest(),
    )
    if operation == Submission.Operation.UPDATE:
        Amendment.objects.filter(
            report=report, released_at__isnull=True, discarded_at__isnull=True
        ).update(version=version)
    audit.record(
        "release.queued",
        actor=actor,
        report=report,
        version=version.number,
        submission=submission.pk,
        operation=operation,
    )
    return submission


def _replay(
    token: uuid.UUID, *, signer: User, report_id: int, version_number: int
) -> SignResult | None:
    signature = Signature.objects.select_related("report", "version").filter(token=token).first()
    if signature is None:
        return None
    if (
        signature.signer_id != signer.pk
        or signature.report_id != report_id
        or signature.version.number != version_number
    ):
        raise TokenReused(
            "This signing form was already used for other content. Open the report again "
            "and sign what it says now."
        )
    submission = Submission.objects.filter(token=token).first()
    return SignResult(signature.report, signature, submission, replayed=True)


def password_is_correct(request: HttpRequest, signer: User, password: str) -> bool:
    """Through Django's authentication, so a failure sends `user_login_failed` (audited, and
    counted by the login throttle) exactly like a failed sign-in (RELIABILITY SIG-01)."""
    if not password:
        return False
    user = authenticate(request, username=signer.get_username(), password=password)
    return user is not None and user.pk == signer.pk


# --- review ----------------------------------------------------------------------------------


class ReviewRefused(Exception):
    """The review step cannot be taken now; the message says why, for the supervisor."""


def verify_report(
    *,
    request: HttpRequest,
    report_id: int,
    verifier: User,
    password: str,
    version_number: int,
    token: uuid.UUID,
) -> SignResult:
    """Sign the version under review with meaning "verified"; once enough different supervisors
    have, release it as `final`. The author can never verify their own report (RELIABILITY
    AC-03), whatever the page offered. Raises WrongPassword, ReviewRefused, TokenReused."""
    replay = _replay(token, signer=verifier, report_id=report_id, version_number=version_number)
    if replay is not None:
        return replay
    report = Report.objects.get(pk=report_id)
    _refuse_own_report(report, verifier)
    if not password_is_correct(request, verifier, password):
        with transaction.atomic():
            audit.record(
                "signature.refused",
                actor=verifier,
                report=report,
                version=version_number,
                reason="wrong password",
            )
        raise WrongPassword
    return _verify_checked(report_id, verifier=verifier, version_number=version_number, token=token)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What became of one report of a batch verification."""

    report_id: int
    version_number: int
    verified: bool
    message: str


def verify_many(
    *,
    request: HttpRequest,
    verifier: User,
    password: str,
    choices: list[tuple[int, int]],
    token: uuid.UUID,
) -> list[BatchOutcome]:
    """Verify several reports with one password entry, each at the version the supervisor saw.

    Each report is verified (or refused) on its own, exactly as `verify_report` would: a report
    that changed since the queue was read, or that the supervisor wrote, is refused alone. Each
    gets its own one-time token derived from the batch's, so a repeated POST changes nothing.
    Raises WrongPassword.
    """
    if not password_is_correct(request, verifier, password):
        with transaction.atomic():
            audit.record("signature.refused", actor=verifier, reason="wrong password")
        raise WrongPassword
    outcomes = []
    for report_id, version_number in choices:
        item_token = uuid.uuid5(token, f"{report_id}:{version_number}")
        try:
            report = Report.objects.get(pk=report_id)
            _refuse_own_report(report, verifier)
            if report.remote_id and amendments.open_amendment(report):
                # A completion too: its changes since the early release are read first.
                raise ReviewRefused(
                    "An amendment or completion is verified on its own page, after reading its "
                    "changes."
                )
            result = _replay(
                item_token, signer=verifier, report_id=report_id, version_number=version_number
            ) or _verify_checked(
                report_id, verifier=verifier, version_number=version_number, token=item_token
            )
        except (Report.DoesNotExist, ReviewRefused, TokenReused) as exc:
            message = "No such report." if isinstance(exc, Report.DoesNotExist) else str(exc)
            outcomes.append(BatchOutcome(report_id, version_number, False, message))
        else:
            message = (
                "Verified; queued for release to ClinikAPI."
                if result.submission is not None
                else "Verified; waits for another supervisor's verification."
            )
            outcomes.append(BatchOutcome(report_id, version_number, True, message))
    return outcomes


def _refuse_own_report(report: Report, verifier: User) -> None:
    """The author of a report can never verify it (RELIABILITY AC-03), whatever a page showed."""
    if report.author_id == verifier.pk:
        with transaction.atomic():
            audit.record(
                "review.refused", actor=verifier, report=report, reason="author cannot verify"
            )
        raise ReviewRefused("You wrote this report: another supervisor has to verify it.")


def _verify_checked(
    report_id: int, *, verifier: User, version_number: int, token: uuid.UUID
) -> SignResult:
    return _at_most_once(
        lambda report: _verify(
            report, verifier=verifier, version_number=version_number, token=token
        ),
        report_id,
        signer=verifier,
        version_number=version_number,
        token=token,
    )


def _at_most_once(
    step: Callable[[Report], SignResult],
    report_id: int,
    *,
    signer: User,
    version_number: int,
    token: uuid.UUID,
) -> SignResult:
    """Run a signing step under the report's lock, once per one-time form token (SUB-02): a
    repeated or parallel POST of the same form gets the first one's result."""
    try:
        with transaction.atomic():
            report = Report.objects.select_for_update().get(pk=report_id)
            # Checked again under the lock: a parallel POST of the same form may have won.
            replay = _replay(
                token, signer=signer, report_id=report_id, version_number=version_number
            )
            if replay is not None:
                return replay
            return step(report)
    except IntegrityError:
        # The token's unique constraint caught a parallel POST that passed both checks.
        replay = _replay(token, signer=signer, report_id=report_id, version_number=version_number)
        if replay is None:
            raise
        return replay


def _verify(report: Report, *, verifier: User, version_number: int, token: uuid.UUID) -> SignResult:
    if report.author_id == verifier.pk:  # checked before; again here, under the lock
        raise ReviewRefused("You wrote this report: another supervisor has to verify it.")
    version = _under_review(report, version_number)
    if Signature.objects.filter(
        version=version, signer=verifier, meaning=SignatureMeaning.VERIFIED
    ).exists():
        raise ReviewRefused("You have verified this version already.")
    signature = create_signature(version, verifier, SignatureMeaning.VERIFIED, token=token)
    Review.objects.create(
        report=report, version=version, reviewer=verifier, decision=Review.Decision.VERIFIED
    )
    Notification.objects.create(
        recipient_id=report.author_id, report=report, kind=Notification.Kind.VERIFIED
    )
    audit.record(
        "report.verified",
        actor=verifier,
        report=report,
        version=version.number,
        content_hash=signature.content_hash,
    )
    verifiers = (
        Signature.objects.filter(version=version, meaning=SignatureMeaning.VERIFIED)
        .values("signer")
        .distinct()
        .count()
    )
    submission = None
    if verifiers >= settings.CLINIKUI_VERIFIERS_REQUIRED:
        report.state = ReportState.RELEASING
        submission = queue_release(
            report=report, version=version, signature=signature, token=token, actor=verifier
        )
    report.updated_at = timezone.now()
    report.save(update_fields=["state", "updated_at"])
    signature.refresh_from_db(fields=["signed_at"])
    return SignResult(report=report, signature=signature, submission=submission)


def return_report(*, report_id: int, reviewer: User, version_number: int, comment: str) -> Review:
    """Send the report back to its author as a draft, with the reviewer's comment.

    Raises ReviewRefused.
    """
    comment = comment.strip()
    if not comment:
        raise ReviewRefused("Say what the author should change.")
    with transaction.atomic():
        report = Report.objects.select_for_update().get(pk=report_id)
        version = _under_review(report, version_number)
        review = Review.objects.create(
            report=report,
            version=version,
            reviewer=reviewer,
            decision=Review.Decision.RETURNED,
            comment=comment,
        )
        report.state = ReportState.DRAFT
        report.updated_at = timezone.now()
        report.save(update_fields=["state", "updated_at"])
        Notification.objects.create(
            recipient_id=report.author_id, report=report, kind=Notification.Kind.RETURNED
        )
        audit.record("report.returned", actor=reviewer, report=report, version=version.number)
    return review


def _under_review(report: Report, version_number: int) -> ReportVersion:
    if report.state != ReportState.AWAITING_REVIEW:
        raise ReviewRefused(
            f"This report is {report.get_state_display().lower()}, not awaiting review."
        )
    if report.head != version_number:
        raise ReviewRefused("The report changed after you opened it. Read it again.")
    return report.versions.get(number=report.head)
