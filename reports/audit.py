"""The audit trail: append an event in the caller's transaction, and verify the chain.

Hand-written rather than a third-party audit package: the trail must be hash-chained and written
in the same transaction as the change it records, with the database clock, which the common
packages (model-history tables written by signals) do not give.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models.functions import Now

from reports.models import AuditEvent, AuditHead, Report

GENESIS = "0" * 64


def record(
    action: str,
    *,
    actor: User | None,
    report: Report | None = None,
    version: int | None = None,
    **details: Any,
) -> AuditEvent:
    """Append one event; must run inside the transaction of the change it records."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events are written in the transaction of their change")
    head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
    at = AuditHead.objects.filter(pk=1).annotate(now=Now()).values_list("now", flat=True).get()
    event = AuditEvent(
        seq=head.seq + 1,
        at=at,
        actor=actor,
        action=action,
        report=report,
        version=version,
        details=details,
        prev_hash=head.hash,
    )
    event.hash = chain_hash(event.prev_hash, event)
    event.save(force_insert=True)
    head.seq, head.hash = event.seq, event.hash
    head.save(update_fields=["seq", "hash"])
    return event


def record_once(
    action: str, *, actor: User | None, within: timedelta, same: str, **details: Any
) -> AuditEvent | None:
    """Append the event unless one with the same action and the same `details[same]` was
    appended in the last `within` (database clock); returns the event, or None if it was not
    appended. The check holds the chain's lock, so two requests racing cannot both append."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events are written in the transaction of their change")
    AuditHead.objects.select_for_update().get_or_create(pk=1)
    recent = AuditEvent.objects.filter(
        action=action, at__gte=Now() - within, **{f"details__{same}": details[same]}
    )
    if recent.exists():
        return None
    return record(action, actor=actor, **details)


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical(event)).encode()).hexdigest()


def canonical(event: AuditEvent) -> str:
    """The row as hashed: every field but the hashes, in a fixed order and format."""
    return json.dumps(
        [
            event.seq,
            _utc(event.at),
            event.actor_id,
            event.action,
            event.report_id,
            event.version,
            event.details,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )


@dataclass(frozen=True, slots=True)
class BrokenLink:
    seq: int
    reason: str


def verify() -> tuple[int, BrokenLink | None]:
    """Walk the chain from the start; the number of events checked and the first broken link."""
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for event in _events():
        if event.seq != expected_seq:
            return checked, BrokenLink(expected_seq, f"event {expected_seq} is missing")
        if event.prev_hash != expected_prev:
            return checked, BrokenLink(event.seq, "it does not point at the event before it")
        if chain_hash(event.prev_hash, event) != event.hash:
            return checked, BrokenLink(event.seq, "its content does not match its hash")
        expected_prev, expected_seq, checked = event.hash, event.seq + 1, checked + 1
    return checked, None


def _events() -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("seq").iterator(chunk_size=2000)


def _utc(moment: datetime) -> str:
    # Microseconds are kept: both databases store them, so the hash survives a round trip.
    return moment.astimezone(UTC).isoformat()
