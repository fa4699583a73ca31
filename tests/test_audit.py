"""The audit trail: same transaction, database clock, append-only, hash-chained, verifiable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from reports import audit, services
from reports.models import AuditEvent, ReportVersion
from reports.payload import ReportContent
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(clinician):
    return services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)


def save(report, clinician, text: str, base: int):
    return services.save_draft(
        report_id=report.pk,
        author=clinician,
        base_version=base,
        content=ReportContent(patient_id=FIXED_PATIENT_ID, conclusion=text),
    )


def test_every_draft_change_writes_one_chained_event(report, clinician):
    save(report, clinician, "One.", 1)
    save(report, clinician, "Two.", 2)
    with pytest.raises(services.DraftConflict):
        save(report, clinician, "Stale.", 2)

    events = list(AuditEvent.objects.all())

    assert [(e.action, e.version) for e in events] == [
        ("draft.started", 1),
        ("draft.saved", 2),
        ("draft.saved", 3),
        ("draft.conflict_kept", 4),
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert audit.verify() == (4, None)


def test_a_failed_audit_write_rolls_the_change_back(report, clinician, monkeypatch):
    def refuse(*args, **kwargs):
        raise DatabaseError("audit table unavailable")

    monkeypatch.setattr(audit, "record", refuse)

    with pytest.raises(DatabaseError):
        save(report, clinician, "Must not stay.", 1)

    assert ReportVersion.objects.filter(report=report).count() == 1
    report.refresh_from_db()
    assert report.head == 1


def test_the_database_refuses_to_change_an_audit_row(report):
    event = AuditEvent.objects.get()

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="draft.deleted")

    assert AuditEvent.objects.get().action == "draft.started"


def test_a_deleted_audit_row_is_refused_or_at_least_caught(report, clinician):
    save(report, clinician, "One.", 1)
    first = AuditEvent.objects.get(seq=1)

    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(pk=first.pk).delete()
        assert AuditEvent.objects.count() == 2
    else:
        # SQLite (the demo database) lets the delete through; the chain check catches it.
        AuditEvent.objects.filter(pk=first.pk).delete()
        with pytest.raises(CommandError, match="broken at event 1: event 1 is missing"):
            call_command("verify_audit")


def test_verify_audit_reports_the_first_altered_row(report, clinician, capsys):
    save(report, clinician, "One.", 1)
    save(report, clinician, "Two.", 2)
    call_command("verify_audit")
    assert "whole: 3 events verified" in capsys.readouterr().out

    with connection.cursor() as cursor:  # someone with the database superuser's rights
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")  # triggers off
        else:
            cursor.execute("DROP TRIGGER reports_auditevent_no_update")
        cursor.execute("UPDATE reports_auditevent SET version = 9 WHERE seq = 2")

    with pytest.raises(CommandError, match="broken at event 2: its content does not match"):
        call_command("verify_audit")


def test_audit_times_come_from_the_database_clock(report):
    event = AuditEvent.objects.get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        (now,) = cursor.fetchone()

    assert abs((to_utc(now) - event.at).total_seconds()) < 60


def test_sign_ins_failures_and_sign_outs_are_audited_without_passwords(client, clinician):
    client.post(reverse("login"), {"username": "clinician", "password": "wrong"})
    client.post(reverse("login"), {"username": "clinician", "password": PASSWORD})
    client.post(reverse("logout"))

    events = list(AuditEvent.objects.values_list("action", "actor_id", "details"))
    assert [(action, actor) for action, actor, _ in events] == [
        ("auth.sign_in_failed", None),
        ("auth.signed_in", clinician.pk),
        ("auth.signed_out", clinician.pk),
    ]
    assert events[0][2] == {"username": "clinician", "ip": "127.0.0.1"}
    assert "wrong" not in str(events) and PASSWORD not in str(events)


def to_utc(value: str | datetime) -> datetime:
    if isinstance(value, str):  # SQLite answers with text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def _as_superuser(cursor) -> None:
    """Switch the append-only triggers off, as a database superuser could."""
    if connection.vendor == "postgresql":
        cursor.execute("SET LOCAL session_replication_role = replica")
    else:
        cursor.execute("DROP TRIGGER reports_auditevent_no_update")


@pytest.mark.parametrize(
    ("tampering", "first_broken"),
    [
        # Two events swapped: each keeps its number but takes the other's content.
        (
            "UPDATE reports_auditevent SET action = CASE seq WHEN 2 THEN 'draft.started' "
            "ELSE 'draft.saved' END WHERE seq IN (1, 2)",
            "event 1",
        ),
        # Events renumbered to hide a removal: 3 becomes 2 after 2 is gone.
        (
            "DELETE FROM reports_auditevent WHERE seq = 2; "
            "UPDATE reports_auditevent SET seq = 2 WHERE seq = 3",
            "event 2",
        ),
        # The tail cut off and a forged event appended with a made-up hash.
        (
            "DELETE FROM reports_auditevent WHERE seq = 3; "
            "INSERT INTO reports_auditevent (seq, at, action, details, prev_hash, hash) "
            "SELECT 3, at, 'report.released', '{}', hash, 'forged' || substr(hash, 7) "
            "FROM reports_auditevent WHERE seq = 2",
            "event 3",
        ),
    ],
    ids=["swapped", "renumbered", "forged-tail"],
)
def test_verify_audit_catches_reordered_removed_and_forged_rows(
    report, clinician, tampering, first_broken
):
    save(report, clinician, "One.", 1)
    save(report, clinician, "Two.", 2)
    with connection.cursor() as cursor:
        _as_superuser(cursor)
        for statement in tampering.split("; "):
            cursor.execute(statement)
    with pytest.raises(CommandError, match=f"broken at {first_broken}"):
        call_command("verify_audit")
