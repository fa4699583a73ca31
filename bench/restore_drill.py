"""X5 — the backup-restore drill (RELIABILITY SUB-11, OPS-01): restore, reconcile, 0 duplicates.

On a throwaway PostgreSQL 15 cluster and the sandbox served over a socket (with ClinikAPI's
search lag), as docs/operations.md tells an operator to do it:

1. three reports are released; five more are signed and wait in the outbox;
2. `pg_dump --format=custom` — the backup;
3. the worker sends the five (they reach ClinikAPI) and a clinician starts one more draft: both
   happen after the backup;
4. the database is dropped and restored from the backup (`pg_restore`), timed;
5. `manage.py verify_audit`; the rows older than the backup are compared with checksums taken
   at backup time;
6. `manage.py release_worker --after-restore`, then the worker: the five must be adopted from
   ClinikAPI, not sent again.

Prints the backup size and times, the data-loss window (what happened after the backup is
gone: the draft typed then), and remote reports per local report (target: 0 sent twice). As a
same-run baseline, the backup is then restored once more and the worker started without
`--after-restore`: the five are sent a second time.

    .venv/bin/python bench/restore_drill.py

Needs PostgreSQL 15's binaries (/usr/lib/postgresql/15/bin); as root, the cluster runs as the
`postgres` OS user.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PGBIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "clinikui-demo"
SEARCH_LAG = 2.0  # seconds; the reconcile waits below keep ClinikAPI's real ratio (10 s : 30/120 s)
WAITING = 5
RELEASED_BEFORE = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL cluster on loopback, removed on exit."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="clinikui-drill-"))
        self.port = free_port()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.folder, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    def pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_owner, str(PGBIN / tool), *args], check=True, capture_output=True, text=True
        )

    def start(self) -> None:
        data = str(self.folder / "data")
        self.pg("initdb", "-D", data, "-U", "clinikui", "--auth=trust", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} "
        options += f"-c unix_socket_directories={self.folder}"
        self.pg("pg_ctl", "-D", data, "-l", str(self.folder / "log"), "-w", "-o", options, "start")
        self.createdb()

    def createdb(self) -> None:
        self.pg("createdb", *self.connection(), "clinikui")

    def dropdb(self) -> None:
        self.pg("dropdb", *self.connection(), "clinikui")

    def connection(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "clinikui"]

    @property
    def url(self) -> str:
        return f"postgres://clinikui@127.0.0.1:{self.port}/clinikui"

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_owner,
                str(PGBIN / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def main() -> None:
    cluster = Cluster()
    sandbox: subprocess.Popen[bytes] | None = None
    try:
        cluster.start()
        port = free_port()
        env = {
            **os.environ,
            "CLINIKUI_ENVIRONMENT": "development",
            "DATABASE_URL": cluster.url,
            "CLINIKAPI_BASE_URL": f"http://127.0.0.1:{port}",
            "CLINIKAPI_SECRET_KEY": "clk_test_restoredrill",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "CLINIKUI_RECONCILE_FIRST_CHECK": str(3 * SEARCH_LAG),
            "CLINIKUI_RECONCILE_SECOND_CHECK": str(12 * SEARCH_LAG),
            "LOG_LEVEL": "WARNING",
        }
        sandbox = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "sandbox_api",
                "--port",
                str(port),
                "--lag",
                str(SEARCH_LAG),
                "--rate-limit",
                "10000",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        manage(env, "migrate", "--no-input")
        manage(env, "create_demo_users", "--password", PASSWORD)
        manage(env, "load_starter_terminology")
        drill(env, cluster)
    finally:
        if sandbox is not None:
            sandbox.terminate()
            sandbox.wait(timeout=10)
        cluster.stop()


def drill(env: dict[str, str], cluster: Cluster) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinikui.settings")
    django.setup()
    from django.db import connections

    released_before = [sign_new_report() for _ in range(RELEASED_BEFORE)]
    run_worker_until_settled(env)
    waiting = [sign_new_report() for _ in range(WAITING)]
    before = checksums()
    dump = cluster.folder / "backup.dump"
    started = time.monotonic()
    subprocess.run(
        [str(PGBIN / "pg_dump"), "--format=custom", f"--file={dump}", cluster.url],
        check=True,
        cwd=ROOT,
    )
    dump_seconds = time.monotonic() - started
    backup_at = time.monotonic()

    # After the backup: the five reach ClinikAPI, and a clinician types a new draft.
    run_worker_until_settled(env)
    time.sleep(SEARCH_LAG + 0.5)  # ClinikAPI's searches show them only after the lag
    assert all(remote_count(report) == 1 for report in waiting), "the five were not sent"
    lost_draft = start_draft()

    connections.close_all()
    started = time.monotonic()
    cluster.dropdb()
    cluster.createdb()
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={cluster.url}", str(dump)], check=True)
    restore_seconds = time.monotonic() - started
    window = time.monotonic() - backup_at

    audit = manage(env, "verify_audit").strip().splitlines()[-1]
    after = checksums()
    from reports.models import Report

    draft_survived = Report.objects.filter(pk=lost_draft).exists()
    marked = manage(env, "release_worker", "--after-restore").strip()
    run_worker_until_settled(env)
    from reports.models import SubmissionAttempt

    outcomes = Counter(
        SubmissionAttempt.objects.filter(action="reconcile").values_list("outcome", flat=True)
    )
    time.sleep(SEARCH_LAG + 0.5)
    counts = {report: remote_count(report) for report in released_before + waiting}
    twice = sum(1 for count in counts.values() if count > 1)
    missing = sum(1 for count in counts.values() if count == 0)

    size = dump.stat().st_size / 1024
    print(f"backup: pg_dump --format=custom {size:.0f} KiB in {dump_seconds:.2f} s")
    print(f"restore: dropdb + createdb + pg_restore in {restore_seconds:.2f} s")
    print(
        f"data-loss window: {window:.1f} s between backup and restore; the draft started "
        f"then {'survived (unexpected)' if draft_survived else 'is gone, as expected'}"
    )
    print(f"audit chain after restore: {audit}")
    print(
        f"rows older than the backup: checksums {'match' if after == before else 'DIFFER'} "
        f"({len(before)} tables)"
    )
    print(f"after-restore: {marked}")
    print(f"reconciliation outcomes: {dict(outcomes)}")
    print(
        f"remote reports per local report ({len(counts)} reports): sent twice {twice}, "
        f"missing {missing}  {'✔' if twice == 0 and missing == 0 else '✘'}"
    )
    ok = twice == 0 and missing == 0 and after == before and "is whole" in audit
    ok = ok and not draft_survived and outcomes.get("adopted", 0) == WAITING

    # The same-run baseline: the same backup restored again, the worker started straight away.
    connections.close_all()
    cluster.dropdb()
    cluster.createdb()
    subprocess.run(
        [str(PGBIN / "pg_restore"), "--no-owner", f"--dbname={cluster.url}", str(dump)],
        check=True,
    )
    run_worker_until_settled(env)
    time.sleep(SEARCH_LAG + 0.5)
    again = sum(1 for report in waiting if remote_count(report) > 1)
    print(
        f"baseline, the same restore without --after-restore: {again} of {WAITING} waiting "
        "reports sent twice"
    )
    connections.close_all()
    if not ok:
        raise SystemExit(1)


def sign_new_report() -> str:
    """A complete preliminary report, signed by the demo clinician; returns its number."""
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    from reports import services, workflow

    author = User.objects.get(username="clinician")
    report_id = start_draft()
    services.save_draft(
        report_id=report_id, author=author, base_version=1, content=complete_content()
    )
    from reports.models import Report

    report = Report.objects.get(pk=report_id)
    workflow.sign_report(
        request=RequestFactory().post("/"),
        report_id=report.pk,
        signer=author,
        password=PASSWORD,
        version_number=report.head,
        token=uuid.uuid4(),
    )
    return report.number


def start_draft() -> int:
    from django.contrib.auth.models import User

    from reports import services
    from reports.sandbox.seed import FIXED_PATIENT_ID

    author = User.objects.get(username="clinician")
    return services.start_report(author=author, patient_id=FIXED_PATIENT_ID).pk


def complete_content() -> Any:
    from datetime import UTC, datetime

    from reports import clinikapi
    from reports.payload import LOINC, CodedConcept, ReportContent
    from reports.sandbox.seed import FIXED_PATIENT_ID

    observations = clinikapi.iter_all(
        clinikapi.get_client().search_observations, patient_id=FIXED_PATIENT_ID
    )
    return ReportContent(
        patient_id=FIXED_PATIENT_ID,
        code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
        category="LAB",
        status="preliminary",
        effective=datetime(2026, 11, 20, 7, 40, tzinfo=UTC),
        result_ids=tuple(sorted(o.id for o in observations)[:2]),
        conclusion=f"Drill report {uuid.uuid4().hex[:8]}.",
    )


def run_worker_until_settled(env: dict[str, str], timeout: float = 120.0) -> None:
    """`release_worker --once` until no report waits (reconciliation waits out the lag)."""
    from reports.models import Submission

    deadline = time.monotonic() + timeout
    while True:
        manage(env, "release_worker", "--once")
        if not Submission.objects.waiting().exists():
            return
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not settle")
        time.sleep(0.5)


def remote_count(number: str) -> int:
    """How many reports ClinikAPI holds whose signed PDF names this local report."""
    from reports import clinikapi
    from reports.sandbox.seed import FIXED_PATIENT_ID

    labs = clinikapi.iter_all(clinikapi.get_client().search_labs, patient_id=FIXED_PATIENT_ID)
    return sum(
        1 for lab in labs if any(number in (item.title or "") for item in lab.presented_form)
    )


def checksums() -> dict[str, str]:
    """SHA-256 of each table's rows that existed at backup time, in primary-key order."""
    from reports.models import (
        Attachment,
        AuditEvent,
        Report,
        ReportVersion,
        Signature,
        Submission,
    )

    tables: dict[str, Any] = {
        "reports": Report.objects.values_list("pk", "author", "patient_id", "created_at"),
        "versions": ReportVersion.objects.values_list("pk", "report", "number", "content"),
        "attachments": Attachment.objects.values_list("pk", "sha256"),
        "signatures": Signature.objects.values_list("pk", "version", "content_hash", "signed_at"),
        "submissions": Submission.objects.values_list("pk", "report", "payload_hash", "token"),
        "audit": AuditEvent.objects.values_list("seq", "hash"),
    }
    return {
        name: hashlib.sha256(repr(list(rows.order_by("pk"))).encode()).hexdigest()
        for name, rows in tables.items()
    }


if __name__ == "__main__":
    main()
