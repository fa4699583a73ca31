"""The release worker: delivers each outbox row to ClinikAPI exactly once (RELIABILITY §0, SUB-).

`POST /v1/labs` has no idempotency key, so every failure is sorted into one of three classes
before anything else happens (SUB-04):

* *not sent* (connection refused, connect timeout): nothing reached ClinikAPI; send again after
  a jittered backoff;
* *rejected* (4xx): nothing was stored; validation problems go back to the author, a refused key
  or an exhausted quota holds all sending and alerts an administrator, a rate limit pauses every
  worker until ClinikAPI's reset;
* *unknown* (read timeout, dropped connection, garbage, 5xx, a worker that died mid-send): the
  report may exist. It is reconciled: after ClinikAPI's search lag the patient's reports are
  searched for one carrying this submission's fingerprint; one match is adopted, several are
  held for a person, none means one more search later and only then a resend (SUB-05).

Rows are claimed with a lease (compare-and-set on the lease, so several workers on one database
never take the same row, SQLite and PostgreSQL alike); a lease that runs out while a row was being
sent sends that row through reconciliation, never straight back to sending (SUB-10). The global
pause, the circuit breaker and the holds live in one `Transmission` row all workers share.

Hand-written rather than a task queue library: the exactly-once rules (the *unknown* class, the
reconciliation, the crash points) are the substance here, and a generic queue would only carry
the rows this module already keeps.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from reports import amendments, audit, clinikapi, services, signed_documents, signing
from reports.alerts import raise_alert
from reports.models import (
    WAITING_STATES,
    Alert,
    Amendment,
    Attachment,
    Notification,
    Report,
    ReportState,
    Submission,
    SubmissionAttempt,
    SubmissionState,
    Transmission,
)
from reports.payload import ReportContent
from reports.signed_pdf import SignedPDFTooLarge, title_for

logger = logging.getLogger(__name__)

CRASH_POINTS = ("before_send", "after_response_before_commit")


def crash_point(name: str) -> None:
    """Test-only: end the process at once, without cleanup, at the named point (RELIABILITY 4.1)."""
    if name == settings.CLINIKUI_WORKER_CRASH_POINT:
        logger.critical("Worker stopping hard at crash point %s (test setting)", name)
        os._exit(70)


@dataclass(frozen=True, slots=True)
class Policy:
    reconcile_first: timedelta
    reconcile_second: timedelta
    lease: timedelta
    breaker_threshold: int
    breaker_cooldown: timedelta
    rate_budget: float

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            reconcile_first=timedelta(seconds=settings.CLINIKUI_RECONCILE_FIRST_CHECK),
            reconcile_second=timedelta(seconds=settings.CLINIKUI_RECONCILE_SECOND_CHECK),
            lease=timedelta(seconds=settings.CLINIKUI_WORKER_LEASE),
            breaker_threshold=settings.CLINIKUI_BREAKER_THRESHOLD,
            breaker_cooldown=timedelta(seconds=settings.CLINIKUI_BREAKER_COOLDOWN),
            rate_budget=settings.CLINIKUI_RATE_BUDGET,
        )


class Worker:
    """Takes due submissions one at a time; run several (threads or processes) at once safely."""

    def __init__(
        self,
        *,
        name: str | None = None,
        api: clinikapi.ClinikAPI | None = None,
        policy: Policy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._api = api
        self.policy = policy or Policy.from_settings()
        self.rng = rng or random.Random()

    @property
    def api(self) -> clinikapi.ClinikAPI:
        return self._api or clinikapi.get_client()

    # --- the loop ----------------------------------------------------------------------------

    def run(self, *, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        logger.info("Release worker %s started", self.name)
        while not stop.is_set():
            try:
                busy = self.step()
            except Exception:
                # A bug or a database outage: the row keeps its lease and, when that runs out,
                # goes through reconciliation. The loop itself carries on.
                logger.exception("Release worker step failed")
                busy = False
            if not busy:
                stop.wait(poll_seconds)
        logger.info("Release worker %s stopped", self.name)

    def run_until_idle(self, *, max_steps: int = 1000) -> int:
        """Steps until nothing is due now (for tests and `release_worker --once`)."""
        steps = 0
        while steps < max_steps and self.step():
            steps += 1
        return steps

    def step(self) -> bool:
        """Do one piece of work; False when there was nothing this worker may do now."""
        now = timezone.now()
        self._recover_abandoned(now)
        gate = Transmission.objects.get_or_create(pk=1)[0]
        if gate.hold or (gate.paused_until and gate.paused_until > now):
            return False
        probing = gate.consecutive_failures >= self.policy.breaker_threshold
        if probing and not self._take_probe(gate, now):
            return False
        submission = self._claim(now)
        if submission is None:
            return False
        if submission.state == SubmissionState.SENT:
            self._read_back(submission)
        elif submission.state == SubmissionState.UNKNOWN:
            self._reconcile(submission)
        else:
            self._send(submission)
        return True

    # --- claiming ----------------------------------------------------------------------------

    def _recover_abandoned(self, now: datetime) -> None:
        """Rows left mid-send by a worker that died: their outcome is unknown (SUB-10)."""
        abandoned = Submission.objects.filter(
            state=SubmissionState.SENDING, lease_expires_at__lte=now
        )
        for submission in abandoned:
            with transaction.atomic():
                moved = Submission.objects.filter(
                    pk=submission.pk,
                    state=SubmissionState.SENDING,
                    lease_expires_at=submission.lease_expires_at,
                ).update(
                    state=SubmissionState.UNKNOWN,
                    unknown_since=now,
                    reconcile_checks=0,
                    next_attempt_at=now + self.policy.reconcile_first,
                    lease_owner="",
                    lease_expires_at=None,
                    error_code="WORKER_LOST",
                    updated_at=now,
                )
                if moved:
                    logger.warning(
                        "Submission %s was abandoned mid-send by %s; reconciling",
                        submission.pk,
                        submission.lease_owner or "a worker",
                    )
                    _audit(
                        submission,
                        "release.outcome_unknown",
                        reason="worker lost",
                    )

    def _claim(self, now: datetime) -> Submission | None:
        due = Q(
            state__in=[SubmissionState.PENDING, SubmissionState.UNKNOWN],
            next_attempt_at__lte=now,
        ) | Q(state=SubmissionState.SENT, read_back="", next_attempt_at__lte=now)
        free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
        candidates = Submission.objects.filter(due & free).order_by("created_at", "pk")
        for pk, state, lease in candidates.values_list("pk", "state", "lease_expires_at")[:10]:
            unchanged = Q(pk=pk, state=state) & (
                Q(lease_expires_at__isnull=True) if lease is None else Q(lease_expires_at=lease)
            )
            if Submission.objects.filter(unchanged).update(
                lease_owner=self.name, lease_expires_at=now + self.policy.lease
            ):
                return Submission.objects.select_related("report", "version", "signature").get(
                    pk=pk
                )
        return None

    def _release(self, submission: Submission, **changes: Any) -> int:
        """Write the outcome and give the row up, if this worker still holds it."""
        return Submission.objects.filter(pk=submission.pk, lease_owner=self.name).update(
            lease_owner="", lease_expires_at=None, updated_at=timezone.now(), **changes
        )

    # --- sending -----------------------------------------------------------------------------

    def _send(self, submission: Submission) -> None:
        if not self._signature_holds(submission):
            return
        try:
            if not _is_cancellation(submission):
                self._prepare_pdf(submission)
        except clinikapi.ClinikAPIError as exc:
            self._failed(submission, exc, attempt=None)
            return
        except signed_documents.ResultsRefused as exc:
            self._return_to_author(
                submission, code="RESULTS_REFUSED", message=str(exc), issues=exc.issues
            )
            return
        except SignedPDFTooLarge as exc:
            issue = {"field": "presentedForm", "message": str(exc)}
            self._return_to_author(
                submission, code="PDF_TOO_LARGE", message=str(exc), issues=[issue]
            )
            return
        body = self.request_body(submission)
        now = timezone.now()
        with transaction.atomic():
            # From here until an outcome is written, a crash leaves the outcome unknown.
            if not Submission.objects.filter(pk=submission.pk, lease_owner=self.name).update(
                state=SubmissionState.SENDING,
                attempts=F("attempts") + 1,
                lease_expires_at=now + self.policy.lease,
                updated_at=now,
            ):
                return
            attempt = SubmissionAttempt.objects.create(
                submission=submission, action="send", worker=self.name, started_at=now
            )
        crash_point("before_send")
        try:
            if submission.operation == Submission.Operation.UPDATE:
                written = self.api.update_lab(submission.report.remote_id, body)
            else:
                written = self.api.create_lab(body)
        except clinikapi.ClinikAPIError as exc:
            self._failed(submission, exc, attempt=attempt)
            return
        crash_point("after_response_before_commit")
        with transaction.atomic():  # one commit for the whole outcome
            self._finish_attempt(
                attempt, "sent", status=written.meta.status, request_id=written.meta.request_id
            )
            self._mark_sent(
                submission, written.lab, request_id=written.meta.request_id or "", adopted=False
            )
        self._check_rate_budget()

    def _signature_holds(self, submission: Submission) -> bool:
        """Only what was signed is ever sent: a signature that no longer matches its content,
        or a row pointing at another version than the one signed, blocks the send (SIG-04)."""
        check = signing.verify_signature(
            submission.signature, file_bytes=services.attachment_bytes(submission.report)
        )
        if check.ok and submission.signature.version_id == submission.version_id:
            return True
        reason = check.reason or "the release points at another version than the one signed"
        with transaction.atomic():
            self._release(
                submission,
                state=SubmissionState.PARKED,
                error_code="SIGNATURE_INVALID",
                error_message=f"Not sent: {reason}.",
            )
            _audit(
                submission,
                "release.signature_invalid",
            )
        raise_alert(
            "release.signature_invalid",
            f"Report {submission.report.number} was not sent: {reason}.",
            submission=submission,
        )
        return False

    def request_body(self, submission: Submission) -> dict[str, Any]:
        """Exactly what is sent: the `POST` body, an amendment's `PATCH` (CONTRACT §11.4), or
        a cancellation's `PATCH`, which changes the status alone: whatever else ClinikAPI holds,
        the released report's PDF included, stays as it is."""
        if _is_cancellation(submission):
            return {"status": Amendment.Kind.CANCELLED.value}
        body = self.stored_body(submission)
        if submission.operation == Submission.Operation.UPDATE:
            return amendments.patch_body(body)
        return body

    def stored_body(self, submission: Submission) -> dict[str, Any]:
        """What ClinikAPI should hold once the request is applied: the signed body plus its
        files (the attached PDFs and the signed report PDF) and, for an amendment, the signed
        PDF of the release it supersedes (lists are replaced wholesale, so it is resent to
        stay; left out only if it would not fit ClinikAPI's body limit)."""
        content = ReportContent.from_json(submission.version.content)
        files = dict(
            Attachment.objects.filter(
                report=submission.report_id,
                sha256__in=[item.sha256 for item in content.attachments],
            ).values_list("sha256", "content")
        )
        presented = [
            {
                "contentType": "application/pdf",
                "title": item.title,
                "data": base64.b64encode(bytes(files[item.sha256])).decode("ascii"),
            }
            for item in content.attachments
        ]
        if submission.pdf is not None:
            presented.append(
                {
                    "contentType": "application/pdf",
                    "title": submission.pdf_title,
                    "data": base64.b64encode(bytes(submission.pdf)).decode("ascii"),
                }
            )
        if submission.operation == Submission.Operation.UPDATE:
            presented.extend(_superseded_pdf(submission, presented))
        body = dict(submission.payload)
        if presented:
            body["presentedForm"] = presented
        return body

    def _prepare_pdf(self, submission: Submission) -> None:
        """Render the signed report once, with its results read from ClinikAPI (REC-07)."""
        if submission.pdf is not None:
            return
        observations = signed_documents.read_results(self.api, submission)
        pdf, title = signed_documents.render(submission, observations)
        Submission.objects.filter(pk=submission.pk).update(pdf=pdf, pdf_title=title)
        submission.pdf, submission.pdf_title = pdf, title

    def _mark_sent(
        self, submission: Submission, lab: clinikapi.Lab, *, request_id: str, adopted: bool
    ) -> None:
        now = timezone.now()
        with transaction.atomic():
            if not self._release(
                submission,
                state=SubmissionState.SENT,
                remote_id=lab.id,
                request_id=request_id,
                sent_at=now,
                response=_summary(lab),
                error_code="",
                error_message="",
                next_attempt_at=now,
            ):
                return
            report = Report.objects.select_for_update().get(pk=submission.report_id)
            cancelled = _is_cancellation(submission)
            report.state = ReportState.CANCELLED if cancelled else ReportState.RELEASED
            report.remote_id = lab.id
            report.updated_at = now
            report.save(update_fields=["state", "remote_id", "updated_at"])
            Amendment.objects.filter(version=submission.version_id, released_at=None).update(
                released_at=now
            )
            _audit(
                submission,
                "report.cancelled" if cancelled else "report.released",
                remote_id=lab.id,
                request_id=request_id,
                adopted=adopted,
            )
            self._breaker_success()
        logger.info(
            "Submission %s %s as %s (request %s)",
            submission.pk,
            "adopted" if adopted else "sent",
            lab.id,
            request_id or "-",
        )

    def _failed(
        self,
        submission: Submission,
        exc: clinikapi.ClinikAPIError,
        *,
        attempt: SubmissionAttempt | None,
    ) -> None:
        now = timezone.now()
        outcome = _outcome_class(exc)
        if attempt is not None:
            self._finish_attempt(
                attempt, outcome, status=exc.status, request_id=exc.request_id, code=exc.code
            )
        logger.warning(
            "Submission %s: %s (%s, request %s)",
            submission.pk,
            outcome,
            exc.code or type(exc).__name__,
            exc.request_id or "-",
        )
        fields: dict[str, Any] = {"error_code": exc.code or type(exc).__name__}
        if outcome == "unknown" and attempt is not None:
            wait = max(self.policy.reconcile_first.total_seconds(), exc.retry_after or 0.0)
            with transaction.atomic():
                self._release(
                    submission,
                    state=SubmissionState.UNKNOWN,
                    unknown_since=now,
                    reconcile_checks=0,
                    next_attempt_at=now + timedelta(seconds=wait),
                    **fields,
                )
                _audit(
                    submission,
                    "release.outcome_unknown",
                    reason=fields["error_code"],
                )
            self._breaker_failure(now)
        elif outcome in ("not_sent", "unknown"):
            # `unknown` without an attempt: a read while preparing; nothing was written. An
            # unreachable API is unreachable for every row, so the backoff pauses all sending
            # and the queue keeps its order when it drains.
            failures = self._breaker_failure(now)
            delay = clinikapi.backoff_delay(failures - 1, retry_after=exc.retry_after, rng=self.rng)
            self._pause(now + timedelta(seconds=delay))
            self._release(submission, state=SubmissionState.PENDING, next_attempt_at=now, **fields)
        elif outcome == "rate_limited":
            wait = clinikapi.backoff_delay(
                submission.attempts, retry_after=exc.retry_after, rng=self.rng
            )
            self._pause(now + timedelta(seconds=wait))
            self._release(
                submission,
                state=SubmissionState.PENDING,
                next_attempt_at=now + timedelta(seconds=wait),
                **fields,
            )
        elif outcome in ("quota", "credentials"):
            self._park(submission, exc, hold=outcome)
        else:
            self._return_to_author(
                submission,
                code=fields["error_code"],
                message=exc.message,
                issues=[{"field": issue.field, "message": issue.message} for issue in exc.issues],
            )

    def _return_to_author(
        self, submission: Submission, *, code: str, message: str, issues: list[dict[str, str]]
    ) -> None:
        """ClinikAPI refused the content: the report is a draft again, with the reasons."""
        with transaction.atomic():
            if not self._release(
                submission,
                state=SubmissionState.RETURNED,
                error_code=code,
                error_message=message,
                issues=issues,
            ):
                return
            report = Report.objects.select_for_update().get(pk=submission.report_id)
            # A refused cancellation leaves the report as released; anything else is a draft
            # again for its author to mend.
            cancelling = _is_cancellation(submission)
            report.state = ReportState.RELEASED if cancelling else ReportState.DRAFT
            if cancelling:
                # The report reads as released again, at the version ClinikAPI holds.
                amendment = Amendment.objects.filter(
                    version=submission.version_id, released_at=None
                ).first()
                if amendment is not None:
                    amendment.discarded_at = timezone.now()
                    amendment.save(update_fields=["discarded_at"])
                    report.head = amendment.released_version.number
            report.updated_at = timezone.now()
            report.save(update_fields=["state", "head", "updated_at"])
            Notification.objects.create(
                recipient_id=report.author_id, report=report, kind=Notification.Kind.REFUSED
            )
            _audit(
                submission,
                "cancellation.refused" if cancelling else "release.returned",
                code=code,
                fields=sorted({issue["field"] for issue in issues}),
            )

    def _park(self, submission: Submission, exc: clinikapi.ClinikAPIError, *, hold: str) -> None:
        """Hold every submission until an administrator resumes sending (OPS-03)."""
        reason = (
            "ClinikAPI's quota is used up"
            if hold == "quota"
            else "ClinikAPI refused ClinikUI's API key"
        )
        with transaction.atomic():
            self._release(
                submission,
                state=SubmissionState.PARKED,
                error_code=exc.code or type(exc).__name__,
                error_message=exc.message,
            )
            gate = Transmission.objects.select_for_update().get(pk=1)
            first = not gate.hold
            gate.hold = hold
            gate.save(update_fields=["hold"])
            _audit(
                submission,
                "release.held",
                hold=hold,
            )
        if first:
            raise_alert(
                f"transmission.{hold}",
                f"{reason} (code {exc.code or exc.status}, request {exc.request_id or '-'}). "
                "Reports are kept and wait; resume sending with "
                "`python manage.py release_worker --resume` once it is fixed.",
                submission=submission,
            )

    # --- reconciliation ----------------------------------------------------------------------

    def _reconcile(self, submission: Submission) -> None:
        """Find out whether an attempt with an unknown outcome created the report (SUB-05)."""
        now = timezone.now()
        if submission.operation == Submission.Operation.UPDATE:
            self._reconcile_update(submission, now)
            return
        attempt = SubmissionAttempt.objects.create(
            submission=submission, action="reconcile", worker=self.name, started_at=now
        )
        try:
            matches = list(self._matching_reports(submission))
        except clinikapi.ClinikAPIError as exc:
            self._finish_attempt(attempt, _outcome_class(exc), status=exc.status, code=exc.code)
            delay = clinikapi.backoff_delay(
                submission.reconcile_checks, retry_after=exc.retry_after, rng=self.rng
            )
            self._release(submission, next_attempt_at=now + timedelta(seconds=delay))
            if isinstance(exc, clinikapi.Unavailable):
                self._breaker_failure(now)
            return
        self._breaker_success()
        if len(matches) == 1:
            self._finish_attempt(attempt, "adopted")
            self._mark_sent(submission, matches[0], request_id="", adopted=True)
        elif len(matches) > 1:
            self._finish_attempt(attempt, "several_matches")
            with transaction.atomic():
                self._release(
                    submission,
                    state=SubmissionState.PARKED,
                    error_code="SEVERAL_MATCHES",
                    error_message=(
                        "ClinikAPI holds several reports matching this one: "
                        + ", ".join(lab.id for lab in matches)
                    ),
                )
                _audit(
                    submission,
                    "release.duplicates_found",
                    remote_ids=[lab.id for lab in matches],
                )
            raise_alert(
                "release.duplicates",
                f"Report {submission.report.number} exists {len(matches)} times in ClinikAPI "
                f"({', '.join(lab.id for lab in matches)}); a person has to decide which stays.",
                submission=submission,
            )
        elif submission.reconcile_checks == 0:
            self._finish_attempt(attempt, "not_found_first")
            since = submission.unknown_since or now
            self._release(
                submission,
                reconcile_checks=1,
                next_attempt_at=max(now, since + self.policy.reconcile_second),
            )
        else:
            self._finish_attempt(attempt, "not_found_second")
            with transaction.atomic():
                self._release(submission, state=SubmissionState.PENDING, next_attempt_at=now)
                _audit(
                    submission,
                    "release.resend_after_reconcile",
                )

    def _reconcile_update(self, submission: Submission, now: datetime) -> None:
        """Whether an amendment or cancellation with an unknown outcome was applied: read the
        report. Sending the PATCH again is right only if ClinikAPI holds an earlier version; if
        it holds a later one (or the report was cancelled), resending would undo that."""
        attempt = SubmissionAttempt.objects.create(
            submission=submission, action="reconcile", worker=self.name, started_at=now
        )
        try:
            lab = self.api.get_lab(submission.report.remote_id)
        except clinikapi.ClinikAPIError as exc:
            self._finish_attempt(attempt, _outcome_class(exc), status=exc.status, code=exc.code)
            delay = clinikapi.backoff_delay(
                submission.reconcile_checks, retry_after=exc.retry_after, rng=self.rng
            )
            self._release(submission, next_attempt_at=now + timedelta(seconds=delay))
            if isinstance(exc, clinikapi.Unavailable):
                self._breaker_failure(now)
            return
        self._breaker_success()
        verdict = update_verdict(submission, lab)
        if verdict == "applied":
            self._finish_attempt(attempt, "adopted")
            self._mark_sent(submission, lab, request_id="", adopted=True)
        elif verdict == "not_applied":
            self._finish_attempt(attempt, "not_applied")
            with transaction.atomic():
                self._release(submission, state=SubmissionState.PENDING, next_attempt_at=now)
                _audit(submission, "release.resend_after_reconcile")
        else:
            self._finish_attempt(attempt, "superseded")
            message = (
                f"ClinikAPI holds report {submission.report.number} as {lab.status or 'unknown'}"
                f" with a later version than {submission.version.number}; this update was not "
                "sent again. A person has to decide what ClinikAPI should hold."
            )
            with transaction.atomic():
                self._release(
                    submission,
                    state=SubmissionState.PARKED,
                    error_code="SUPERSEDED",
                    error_message=message,
                )
                _audit(submission, "release.superseded")
            raise_alert("release.superseded", message, submission=submission)

    def _matching_reports(self, submission: Submission) -> Iterator[clinikapi.Lab]:
        body = submission.payload
        effective = clinikapi.Lab.parse({"id": "x", **body}).effective_date_time
        for lab in clinikapi.iter_all(
            self.api.search_labs,
            patient_id=str(body["patientId"]),
            date_from=effective.date() if effective else None,
        ):
            # The title is known before the PDF exists (a row restored from a backup taken
            # before its PDF was rendered may still have been sent by then).
            title = submission.pdf_title or title_for(
                submission.report.number, submission.version.number
            )
            if is_same_report(lab, body, pdf_title=title):
                yield lab

    # --- read-back ---------------------------------------------------------------------------

    def _read_back(self, submission: Submission) -> None:
        """Read the released report and compare it with what was signed and sent."""
        now = timezone.now()
        attempt = SubmissionAttempt.objects.create(
            submission=submission, action="read_back", worker=self.name, started_at=now
        )
        try:
            lab = self.api.get_lab(submission.remote_id)
        except clinikapi.ClinikAPIError as exc:
            self._finish_attempt(attempt, _outcome_class(exc), status=exc.status, code=exc.code)
            delay = clinikapi.backoff_delay(submission.attempts, retry_after=None, rng=self.rng)
            self._release(submission, next_attempt_at=now + timedelta(seconds=max(delay, 1.0)))
            return
        if _is_cancellation(submission):
            differences = [] if lab.status == Amendment.Kind.CANCELLED else ["status"]
        else:
            differences = compare_with_sent(self.stored_body(submission), lab)
        self._finish_attempt(attempt, "match" if not differences else "mismatch")
        with transaction.atomic():
            self._release(
                submission,
                read_back=Submission.ReadBack.MISMATCH
                if differences
                else Submission.ReadBack.MATCH,
                read_back_differences=differences,
            )
            _audit(
                submission,
                "release.read_back",
                differences=differences,
            )
        if differences:
            raise_alert(
                "release.read_back_mismatch",
                f"Report {submission.report.number} as stored by ClinikAPI ({submission.remote_id})"
                f" differs from what was signed in: {', '.join(differences)}.",
                submission=submission,
            )

    # --- the shared gate ---------------------------------------------------------------------

    def _take_probe(self, gate: Transmission, now: datetime) -> bool:
        """With the breaker open, one worker at a time may try once the pause is over."""
        if gate.breaker_open_until and gate.breaker_open_until > now:
            return False
        return bool(
            Transmission.objects.filter(pk=1, breaker_open_until=gate.breaker_open_until).update(
                breaker_open_until=now + self.policy.breaker_cooldown
            )
        )

    def _breaker_failure(self, now: datetime) -> int:
        """Count a failure in a row; returns how many there have been."""
        with transaction.atomic():
            gate = Transmission.objects.select_for_update().get(pk=1)
            gate.consecutive_failures += 1
            if gate.unreachable_since is None:
                gate.unreachable_since = now
            if gate.consecutive_failures >= self.policy.breaker_threshold:
                gate.breaker_open_until = now + self.policy.breaker_cooldown
                if gate.consecutive_failures == self.policy.breaker_threshold:
                    logger.error("ClinikAPI unreachable: circuit breaker open")
            gate.save()
        return gate.consecutive_failures

    def _breaker_success(self) -> None:
        Transmission.objects.filter(pk=1).exclude(
            consecutive_failures=0, unreachable_since=None
        ).update(consecutive_failures=0, breaker_open_until=None, unreachable_since=None)

    def _pause(self, until: datetime) -> None:
        """Every worker waits until `until` (ClinikAPI's rate limit is per organisation)."""
        with transaction.atomic():
            gate = Transmission.objects.select_for_update().get(pk=1)
            if gate.paused_until is None or gate.paused_until < until:
                gate.paused_until = until
                gate.save(update_fields=["paused_until"])

    def _check_rate_budget(self) -> None:
        """Pause before ClinikAPI has to say 429: stay within the budget of its limit (SUB-07)."""
        rate = self.api.last_rate_limit
        if rate is None or rate.limit is None or rate.remaining is None:
            return
        reserve = rate.limit * (1.0 - self.policy.rate_budget)
        if rate.remaining <= reserve:
            wait = clinikapi.clamp_wait(float(rate.reset_seconds or 60))
            self._pause(timezone.now() + timedelta(seconds=wait))

    # --- bookkeeping -------------------------------------------------------------------------

    def _finish_attempt(
        self,
        attempt: SubmissionAttempt,
        outcome: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ) -> None:
        SubmissionAttempt.objects.filter(pk=attempt.pk).update(
            ended_at=timezone.now(),
            outcome=outcome,
            http_status=status,
            request_id=request_id or "",
            error_code=code or "",
        )


def _is_cancellation(submission: Submission) -> bool:
    return bool(submission.payload.get("status") == Amendment.Kind.CANCELLED)


def update_verdict(submission: Submission, lab: clinikapi.Lab) -> str:
    """ "applied", "not_applied" or "superseded": where ClinikAPI's copy stands against this
    update, judged by its status and by the signed PDFs it holds, whose titles name the local
    report number and version."""
    if _is_cancellation(submission):
        return "applied" if lab.status == Amendment.Kind.CANCELLED else "not_applied"
    if lab.status == Amendment.Kind.CANCELLED:
        return "superseded"
    pattern = re.compile(rf"ClinikUI report {re.escape(submission.report.number)} v(\d+) ")
    versions = {
        int(match.group(1))
        for item in lab.presented_form
        if (match := pattern.match(item.title or ""))
    }
    number = submission.version.number
    if number in versions and max(versions) == number:
        return "applied"
    if versions and max(versions) > number:
        return "superseded"
    return "not_applied"


def _superseded_pdf(
    submission: Submission, presented: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The signed PDF of the newest earlier release, if it fits beside the rest."""
    previous = (
        Submission.objects.filter(report=submission.report_id, state=SubmissionState.SENT)
        .exclude(pk=submission.pk)
        .exclude(pdf=None)
        .order_by("-sent_at", "-pk")
        .only("pdf", "pdf_title")
        .first()
    )
    if previous is None or previous.pdf is None:
        return []
    item = {
        "contentType": "application/pdf",
        "title": previous.pdf_title,
        "data": base64.b64encode(bytes(previous.pdf)).decode("ascii"),
    }
    size = len(json.dumps({**submission.payload, "presentedForm": [*presented, item]}))
    return [item] if size <= clinikapi.MAX_BODY_BYTES else []


def _audit(submission: Submission, action: str, **details: Any) -> None:
    """The worker's audit event about a submission (it acts for nobody: no actor)."""
    audit.record(
        action,
        actor=None,
        report=submission.report,
        version=submission.version.number,
        submission=submission.pk,
        **details,
    )


def _outcome_class(exc: clinikapi.ClinikAPIError) -> str:
    """RELIABILITY SUB-04's classes, plus the two kinds of hold."""
    if isinstance(exc, clinikapi.RequestRefused):
        return "refused"
    if isinstance(exc, clinikapi.NotSent):
        return "not_sent"
    if isinstance(exc, clinikapi.OutcomeUnknown | clinikapi.Unavailable):
        return "unknown"
    if isinstance(exc, clinikapi.RateLimited):
        return "rate_limited"
    if isinstance(exc, clinikapi.QuotaExceeded):
        return "quota"
    if isinstance(exc, clinikapi.Unauthorized | clinikapi.Forbidden):
        return "credentials"
    return "rejected"


def is_same_report(lab: clinikapi.Lab, body: dict[str, Any], *, pdf_title: str) -> bool:
    """Whether a report found in ClinikAPI is the one this body would create (SUB-05).

    It must agree on patient, code, category, effective time, the set of results and the
    conclusion (by hash), and carry the signed PDF's title, which names the local report number
    and version. Search results that leave the attachments out entirely are judged on the rest.
    """
    sent = clinikapi.Lab.parse({"id": lab.id, **body})
    titles = {item.title for item in lab.presented_form}
    return fingerprint(lab) == fingerprint(sent) and (not titles or pdf_title in titles)


def fingerprint(lab: clinikapi.Lab) -> tuple[Any, ...]:
    return (
        lab.patient_id,
        lab.code.code if lab.code else None,
        lab.category,
        lab.effective_date_time,
        frozenset(lab.result_ids),
        hashlib.sha256((lab.conclusion or "").encode()).hexdigest(),
    )


def compare_with_sent(body: dict[str, Any], lab: clinikapi.Lab) -> list[str]:
    """The contract fields on which ClinikAPI's copy differs from the body sent."""
    sent = clinikapi.Lab.parse({"id": lab.id, **body})
    differences = [
        name
        for name in (
            "status",
            "patient_id",
            "category",
            "encounter_id",
            "effective_date_time",
            "result_ids",
            "conclusion",
            "performer",
            "results_interpreter",
            "specimen_ids",
        )
        if getattr(sent, name) != getattr(lab, name)
    ]
    if _codes(sent.code) != _codes(lab.code):
        differences.append("code")
    if [_codes(code) for code in sent.conclusion_codes] != [
        _codes(code) for code in lab.conclusion_codes
    ]:
        differences.append("conclusion_codes")
    if [(item.title, item.data) for item in sent.presented_form] != [
        (item.title, item.data) for item in lab.presented_form
    ]:
        differences.append("presented_form")
    return differences


def _codes(code: clinikapi.Code | None) -> tuple[str | None, str | None]:
    return (code.system, code.code) if code else (None, None)


def _summary(lab: clinikapi.Lab) -> dict[str, Any]:
    """What is kept of ClinikAPI's answer: ids, status and times, no clinical content."""
    return {
        "id": lab.id,
        "status": lab.status,
        "createdAt": lab.created_at.isoformat() if lab.created_at else None,
        "updatedAt": lab.updated_at.isoformat() if lab.updated_at else None,
    }


def resume_sending() -> int:
    """An administrator's release of a hold: parked rows go back to the queue. Returns how many."""
    now = timezone.now()
    with transaction.atomic():
        Transmission.objects.get_or_create(pk=1)
        Transmission.objects.filter(pk=1).update(
            hold="", paused_until=None, consecutive_failures=0, breaker_open_until=None
        )
        resumed = Submission.objects.filter(
            state=SubmissionState.PARKED,
            error_code__in=["UNAUTHORIZED", "FORBIDDEN", *QUOTA_CODES],
        ).update(state=SubmissionState.PENDING, next_attempt_at=now, updated_at=now)
        Alert.objects.filter(resolved_at=None, kind__startswith="transmission.").update(
            resolved_at=now
        )
        audit.record("release.resumed", actor=None, submissions=resumed)
    return resumed


def reconcile_after_restore() -> int:
    """After the database was restored from a backup, treat every row not known to be sent as
    having an unknown outcome (RELIABILITY SUB-11).

    A row the backup shows as waiting, or held for the quota or the key, may have been sent
    after the backup was taken: a creation sent again would exist twice, and an amendment sent
    again could undo a later one. Each is looked for in ClinikAPI first, like any unknown
    outcome, and sent only if ClinikAPI does not hold it. Returns how many rows were marked.
    """
    now = timezone.now()
    held = Q(
        state=SubmissionState.PARKED, error_code__in=["UNAUTHORIZED", "FORBIDDEN", *QUOTA_CODES]
    )
    with transaction.atomic():
        rows = list(
            Submission.objects.select_for_update()
            .select_related("report", "version")
            .filter(Q(state__in=WAITING_STATES) | held)
        )
        for submission in rows:
            Submission.objects.filter(pk=submission.pk).update(
                state=SubmissionState.UNKNOWN,
                unknown_since=now,
                reconcile_checks=0,
                lease_owner="",
                lease_expires_at=None,
                next_attempt_at=now,
                error_code="RESTORED_FROM_BACKUP",
                updated_at=now,
            )
            _audit(submission, "release.outcome_unknown", reason="restored from backup")
    return len(rows)


QUOTA_CODES = ("MONTHLY_QUOTA_EXCEEDED", "SANDBOX_QUOTA_EXCEEDED")


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """What the banner says about sending (SUB-08, OPS-02, OPS-03)."""

    waiting: int
    oldest: datetime | None
    hold: str
    unreachable_since: datetime | None
    breaker_open: bool


def queue_status() -> QueueStatus:
    waiting = Submission.objects.waiting()
    oldest = waiting.order_by("created_at").values_list("created_at", flat=True).first()
    gate = Transmission.objects.filter(pk=1).first()
    return QueueStatus(
        waiting=waiting.count(),
        oldest=oldest,
        hold=gate.get_hold_display() if gate and gate.hold else "",
        unreachable_since=gate.unreachable_since if gate else None,
        breaker_open=bool(
            gate and gate.consecutive_failures >= settings.CLINIKUI_BREAKER_THRESHOLD
        ),
    )
