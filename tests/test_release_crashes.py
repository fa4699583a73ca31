"""The release worker killed at each crash point; on restart, exactly one remote report.

RELIABILITY 4.1 "Crash points" and SUB-10: the worker runs as a real separate process
(`manage.py release_worker --once`) on the test database and the socket sandbox; it is ended
with `os._exit` at a named point (no cleanup, no rollback handlers), or with SIGKILL while its
request hangs inside ClinikAPI after the report was stored. A new worker then takes over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reports import outbox
from reports.models import Report, ReportState, Submission, SubmissionState
from reports.sandbox.faults import Fault
from tests.releasing import (
    database_url,
    draft,
    drain,
    fast_release_settings,
    remote_reports_of,
    sign,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 1.0


@pytest.fixture
def sandbox(settings, api_over_socket):
    fast_release_settings(settings)
    settings.CLINIKUI_WORKER_LEASE = LEASE_SECONDS
    api_over_socket.sandbox.configure(search_lag_seconds=0.2)
    return api_over_socket


def _start_worker(running, crash_point: str = "") -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CLINIKUI_ENVIRONMENT": "test",
        "DATABASE_URL": database_url(),
        "CLINIKAPI_BASE_URL": running.url,
        "CLINIKUI_WORKER_CRASH_POINT": crash_point,
        "CLINIKUI_WORKER_LEASE": str(LEASE_SECONDS),
        "CLINIKAPI_READ_TIMEOUT": "30",
        "CLINIKAPI_TIMEOUT": "40",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "release_worker", "--once"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _restart_and_finish(running, report) -> Submission:
    time.sleep(LEASE_SECONDS)  # the dead worker's lease runs out
    drain(
        outbox.Worker(name="restarted"),
        until=lambda: Submission.objects.get().state == SubmissionState.SENT,
    )
    assert len(remote_reports_of(running.sandbox, report)) == 1
    return Submission.objects.get()


@pytest.mark.parametrize("point", outbox.CRASH_POINTS)
def test_a_worker_killed_at_a_crash_point_leaves_exactly_one_remote_report(
    clinician, sandbox, point
):
    report = draft(clinician)
    sign(report, clinician)
    worker = _start_worker(sandbox, crash_point=point)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 70, output.decode(errors="replace")
    assert Submission.objects.get().state == SubmissionState.SENDING
    stored_before_restart = len(remote_reports_of(sandbox.sandbox, report))
    assert stored_before_restart == (0 if point == "before_send" else 1)

    submission = _restart_and_finish(sandbox, report)
    outcomes = list(submission.tries.values_list("action", "outcome"))
    if point == "before_send":
        # Nothing reached ClinikAPI: two searches find nothing, then it is sent again.
        assert ("reconcile", "not_found_second") in outcomes
    else:
        # The report was stored: reconciliation adopts it instead of sending it again.
        assert ("reconcile", "adopted") in outcomes


def test_a_worker_killed_after_sending_before_the_response_leaves_exactly_one(clinician, sandbox):
    report = draft(clinician)
    sign(report, clinician)
    # ClinikAPI stores the report, then holds the answer back; the worker dies waiting for it.
    sandbox.sandbox.faults.push(Fault.hang(30, route="POST /v1/labs", when="after"))
    worker = _start_worker(sandbox)
    deadline = time.monotonic() + 60
    while not remote_reports_of(sandbox.sandbox, report):
        assert worker.poll() is None, "the worker ended before it sent anything"
        assert time.monotonic() < deadline, "the worker never sent the report"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    sandbox.sandbox.faults.interrupt()
    sandbox.sandbox.faults.resume()

    submission = _restart_and_finish(sandbox, report)
    assert ("reconcile", "adopted") in list(submission.tries.values_list("action", "outcome"))


def test_after_a_restore_from_backup_a_report_sent_since_is_adopted_not_sent_twice(
    clinician, sandbox
):
    """SUB-11: the backup was taken while the report was still waiting (before its PDF was even
    rendered); it was sent afterwards; the database is restored. `release_worker
    --after-restore` makes the worker look for it in ClinikAPI first."""
    report = draft(clinician)
    sign(report, clinician)
    drain(outbox.Worker(), until=lambda: Submission.objects.get().read_back != "")
    assert len(remote_reports_of(sandbox.sandbox, report)) == 1
    # What the restored database says: still waiting, nothing rendered or sent.
    Submission.objects.update(
        state=SubmissionState.PENDING,
        remote_id="",
        request_id="",
        sent_at=None,
        read_back="",
        pdf=None,
        pdf_title="",
    )
    report.refresh_from_db()
    Report.objects.filter(pk=report.pk).update(state=ReportState.RELEASING, remote_id="")
    output = subprocess.run(
        [sys.executable, "manage.py", "release_worker", "--after-restore"],
        cwd=ROOT,
        env={**os.environ, "CLINIKUI_ENVIRONMENT": "test", "DATABASE_URL": database_url()},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "1 waiting reports will be looked for" in output
    drain(
        outbox.Worker(name="after-restore"),
        until=lambda: Submission.objects.get().state == SubmissionState.SENT,
    )
    submission = Submission.objects.get()
    assert len(remote_reports_of(sandbox.sandbox, report)) == 1
    assert [t.outcome for t in submission.tries.filter(action="reconcile")] == ["adopted"]
    report.refresh_from_db()
    assert report.state == ReportState.RELEASED and report.remote_id == submission.remote_id
