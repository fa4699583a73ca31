"""A report's life on one list: versions, signatures, reviews, releases and amendments.

Read from the rows that record each step (never from the audit trail, which holds ids and kinds
only): who did what, when, and why, oldest first (RELIABILITY AU-, 21 CFR 11.10(e)).
Autosaves are counted, not listed; the history page shows every version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User

from reports.models import (
    Amendment,
    Report,
    ReportVersion,
    Review,
    Signature,
    Submission,
    SubmissionState,
    VersionKind,
)

_ORDER = {"amendment": 0, "version": 1, "signature": 2, "review": 3, "release": 4}


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    what: str
    who: str = ""
    detail: str = ""
    version: int | None = None
    # A CSS hook and a test handle: version, signature, review, release, amendment.
    kind: str = ""


def timeline(
    report: Report,
    *,
    signatures: Iterable[Signature] | None = None,
    reviews: Iterable[Review] | None = None,
) -> tuple[list[Entry], int]:
    """The report's entries oldest first, and how many autosaves were left off the list.

    A page that lists the signatures or reviews itself passes them in (with their versions,
    signers and reviewers), so they are read once."""
    entries: list[Entry] = []
    # Plain rows, not a ReportVersion and a User per version: a draft can have hundreds.
    versions = ReportVersion.objects.filter(report=report).values_list(
        "number",
        "kind",
        "created_at",
        "author__first_name",
        "author__last_name",
        "author__username",
    )
    autosaves = 0
    for number, kind, created_at, first_name, last_name, username in versions:
        if kind == VersionKind.AUTOSAVED:
            autosaves += 1
            continue
        entries.append(
            Entry(
                created_at,
                f"Version {number}: {VersionKind(kind).label.lower()}",
                # What User.get_full_name() or get_username() gives.
                f"{first_name} {last_name}".strip() or username,
                version=number,
                kind="version",
            )
        )
    if signatures is None:
        signatures = Signature.objects.filter(report=report).select_related("version", "signer")
    for signature in signatures:
        entries.append(
            Entry(
                signature.signed_at,
                f"Signed: {signature.get_meaning_display().lower()}",
                signature.printed_name,
                f"SHA-256 {signature.content_hash[:12]}…",
                signature.version.number,
                "signature",
            )
        )
    if reviews is None:
        reviews = Review.objects.filter(report=report).select_related("version", "reviewer")
    for review in reviews:
        entries.append(
            Entry(
                review.created_at,
                review.get_decision_display(),
                _name(review.reviewer),
                review.comment,
                review.version.number,
                "review",
            )
        )
    amendments = list(
        Amendment.objects.filter(report=report).select_related("started_by", "released_version")
    )
    completions = {a.version_id: a for a in amendments if a.is_completion and a.version_id}
    submissions = (
        Submission.objects.filter(report=report).select_related("version").defer("pdf", "payload")
    )
    for submission in submissions:
        number = submission.version.number
        entries.append(
            Entry(submission.created_at, "Queued for ClinikAPI", version=number, kind="release")
        )
        if submission.state == SubmissionState.SENT and submission.sent_at:
            if submission.operation == Submission.Operation.CREATE:
                what = "Released to ClinikAPI"
            elif (completion := completions.get(submission.version_id)) is not None:
                what = f"Final report released to ClinikAPI (PATCH): {_completes(completion)}"
            else:
                what = "Update released to ClinikAPI (PATCH)"
            entries.append(
                Entry(
                    submission.sent_at,
                    what,
                    detail=f"ClinikAPI id {submission.remote_id}",
                    version=number,
                    kind="release",
                )
            )
        elif submission.state in (SubmissionState.RETURNED, SubmissionState.PARKED):
            entries.append(
                Entry(
                    submission.updated_at,
                    submission.get_state_display(),
                    detail=submission.error_message or submission.error_code,
                    version=number,
                    kind="release",
                )
            )
    for amendment in amendments:
        if amendment.kind == Amendment.Kind.CANCELLED:
            started = f"Cancellation of released version {amendment.released_version.number}"
            discarded = "Cancellation refused by ClinikAPI"
        elif amendment.is_completion:
            started = f"Completion as final started: {_completes(amendment)}"
            discarded = "Completion discarded"
        else:
            started = (
                f"Amendment started ({amendment.get_kind_display().lower()}) from "
                f"released version {amendment.released_version.number}"
            )
            discarded = "Amendment discarded"
        entries.append(
            Entry(
                amendment.started_at,
                started,
                _name(amendment.started_by),
                f"{amendment.get_reason_display()}: {amendment.explanation}",
                kind="amendment",
            )
        )
        if amendment.discarded_at:
            entries.append(Entry(amendment.discarded_at, discarded, kind="amendment"))
    # Steps taken in one transaction share the database's clock reading (PostgreSQL's now() is
    # the transaction's start): within one instant, list them in the order they happen.
    entries.sort(key=lambda entry: (entry.at, _ORDER.get(entry.kind, 9)))
    return entries, autosaves


def _completes(amendment: Amendment) -> str:
    """ "completes preliminary version 2": the early release a completion makes final."""
    released = amendment.released_version
    return f"completes {released.content.get('status', 'released')} version {released.number}"


def _name(user: User) -> str:
    return user.get_full_name() or user.get_username()
