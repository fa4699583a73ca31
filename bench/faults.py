"""Fault-injection run of the release path: RELIABILITY F1–F6 against the sandbox over a socket.

The sandbox's own store is the ground truth: for every local report signed here the script counts
the reports ClinikAPI really holds for it (by the signed PDF's title, which carries the local
report number). A report *survived* when it ended released with exactly one remote report.

    .venv/bin/python bench/faults.py                # 25 reports per variant, 10 s search lag
    .venv/bin/python bench/faults.py --per-variant 5 --lag 1   # a quick look

Prints one line per variant and then `injected=N survived=N duplicates=N lost=N`. Reconciliation
runs with its production waits (30 s and 120 s) against the real 10 s lag, so a full run takes
several minutes. Workers are threads of this process (one database, one sandbox), as several
worker processes would be on one database.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCRATCH = Path(tempfile.mkdtemp(prefix="clinikui-faults-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinikui.settings")
os.environ.setdefault("CLINIKUI_ENVIRONMENT", "development")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{SCRATCH / 'faults.sqlite3'}")
os.environ.setdefault("CLINIKAPI_SECRET_KEY", "clk_test_faultsbench")
os.environ.setdefault("CLINIKUI_REVIEW_REQUIRED", "false")
os.environ.setdefault("LOG_LEVEL", "ERROR")
# Placeholder until the sandbox's port is known (set before Django reads it, below).
os.environ["CLINIKAPI_BASE_URL"] = "http://127.0.0.1:9"

import django  # noqa: E402
from django.conf import settings  # noqa: E402

PORT_HOLDER: dict[str, int] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-variant", type=int, default=25)
    parser.add_argument("--lag", type=float, default=10.0, help="sandbox search lag, seconds")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    from reports.sandbox import Sandbox, SandboxConfig
    from reports.sandbox.server import serve_in_thread

    config = SandboxConfig(search_lag_seconds=args.lag, rate_limit_per_minute=1_000_000)
    running = serve_in_thread(Sandbox(config))
    os.environ["CLINIKAPI_BASE_URL"] = running.url
    django.setup()
    settings.CLINIKAPI_BASE_URL = running.url
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    bench = Bench(running, per_variant=args.per_variant, workers=args.workers)
    print(
        f"# faults: {args.per_variant} reports per variant, search lag {args.lag:g} s, "
        f"reconcile after {settings.CLINIKUI_RECONCILE_FIRST_CHECK:g} s and "
        f"{settings.CLINIKUI_RECONCILE_SECOND_CHECK:g} s, {args.workers} worker threads",
        flush=True,
    )
    started = time.monotonic()
    try:
        bench.f1_api_down()
        bench.f2_f3_f5_mixed()
        bench.f4_rate_limits_and_quotas()
        bench.f6_double_submit()
    finally:
        bench.running.stop()
    bench.report(time.monotonic() - started)


@dataclass
class Outcome:
    variant: str
    report_id: int
    remote: int
    released: bool


class Bench:
    def __init__(self, running, *, per_variant: int, workers: int) -> None:
        from django.contrib.auth.models import User

        from reports import clinikapi
        from reports.roles import CLINICIAN, ensure_roles
        from reports.sandbox.seed import FIXED_PATIENT_ID

        ensure_roles()
        self.running = running
        self.per_variant = per_variant
        self.workers = workers
        self.author, created = User.objects.get_or_create(
            username="bench-clinician", defaults={"first_name": "Bench", "last_name": "Author"}
        )
        if created:
            self.author.set_password("bench-password-1")
            self.author.save()
            from django.contrib.auth.models import Group

            self.author.groups.add(Group.objects.get(name=CLINICIAN))
        api = clinikapi.get_client()
        self.patient_id = FIXED_PATIENT_ID
        observations = list(
            clinikapi.iter_all(api.search_observations, patient_id=FIXED_PATIENT_ID)
        )
        self.result_ids = tuple(sorted(o.id for o in observations)[:3])
        self.outcomes: list[Outcome] = []
        self.notes: list[str] = []

    # --- building blocks ----------------------------------------------------------------------

    def signed_reports(self, count: int, label: str) -> list[int]:
        ids = self.drafts(count, label)
        self.sign(ids)
        return ids

    def sign(self, ids: list[int]) -> None:
        from django.test import RequestFactory

        from reports import workflow

        for report_id in ids:
            workflow.sign_report(
                request=RequestFactory().post("/"),
                report_id=report_id,
                signer=self.author,
                password="bench-password-1",
                version_number=2,
                token=uuid.uuid4(),
            )

    def drafts(self, count: int, label: str) -> list[int]:
        from reports import services
        from reports.payload import LOINC, SNOMED_CT, CodedConcept, ReportContent

        ids = []
        for n in range(count):
            content = ReportContent(
                patient_id=self.patient_id,
                code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
                category="LAB",
                status="preliminary",
                effective=datetime(2026, 11, 20, 7, 40, tzinfo=UTC),
                result_ids=self.result_ids,
                # The same clinical content for every report: only the signed PDF's title
                # (the local report number) tells them apart, as in the worst real case.
                conclusion=f"Fault run {label}: mild normocytic anaemia.",
                conclusion_codes=(CodedConcept(SNOMED_CT, "271737000", "Anemia"),),
            )
            report = services.start_report(author=self.author, patient_id=self.patient_id)
            services.save_draft(
                report_id=report.pk, author=self.author, base_version=1, content=content
            )
            ids.append(report.pk)
            del n
        return ids

    def run_workers(self, until, *, timeout: float, quiet: bool = False) -> float:
        """Worker threads until `until()` (or for `timeout` seconds); returns the seconds."""
        from django.db import connection

        from reports import outbox

        stop = threading.Event()
        started = time.monotonic()

        def work(number: int) -> None:
            try:
                outbox.Worker(name=f"bench-{number}").run(stop=stop, poll_seconds=0.2)
            finally:
                connection.close()

        threads = [
            threading.Thread(target=work, args=[n], daemon=True) for n in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        try:
            while not until():
                if time.monotonic() - started > timeout:
                    if not quiet:
                        self.notes.append(f"timed out after {timeout:.0f} s")
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        return time.monotonic() - started

    @staticmethod
    def all_settled(ids: list[int]):
        from reports.models import Submission

        def check() -> bool:
            return not Submission.objects.filter(report_id__in=ids).waiting().exists()

        return check

    def ground_truth(self) -> Counter[str]:
        """Remote reports per local report number, from the sandbox's own store."""
        counts: Counter[str] = Counter()
        for lab in self.running.sandbox.store.labs():
            for item in lab.get("presentedForm") or ():
                title = item.get("title") or ""
                if title.startswith("ClinikUI report R-") or " R-" in title:
                    counts[_report_number(title)] += 1
        return counts

    def record(self, variant_of: dict[int, str]) -> None:
        from reports.models import Report, ReportState

        truth = self.ground_truth()
        for report in Report.objects.filter(pk__in=variant_of):
            self.outcomes.append(
                Outcome(
                    variant=variant_of[report.pk],
                    report_id=report.pk,
                    remote=truth.get(report.number, 0),
                    released=report.state == ReportState.RELEASED,
                )
            )

    # --- the variants -------------------------------------------------------------------------

    def f1_api_down(self) -> None:
        """F1: the port is closed while reports are signed; it opens again; they drain."""
        from reports.sandbox.server import serve_in_thread

        port, sandbox = self.running.port, self.running.sandbox
        ids = self.drafts(self.per_variant, "F1")
        self.running.stop()
        self.sign(ids)  # signing needs no API: it goes on while ClinikAPI is down
        self.run_workers(lambda: False, timeout=15, quiet=True)  # down: the breaker opens
        from reports.models import Transmission

        gate = Transmission.objects.get(pk=1)
        self.notes.append(
            f"F1 breaker: {gate.consecutive_failures} failures in a row while down, "
            f"open={gate.consecutive_failures >= settings.CLINIKUI_BREAKER_THRESHOLD}"
        )
        self.running = serve_in_thread(sandbox, port=port)
        took = self.run_workers(self.all_settled(ids), timeout=300)
        self.notes.append(f"F1 drain after recovery: {took:.1f} s for {len(ids)} reports")
        self.record(dict.fromkeys(ids, "F1 api down"))

    def f2_f3_f5_mixed(self) -> None:
        """F2, F3, F5 at once: each report's first POST meets one fault; resends meet none."""
        from reports.sandbox.faults import Fault

        route = "POST /v1/labs"
        # Latency faults add up on one request in the sandbox, so F2a gets a phase of its own.
        ids = self.signed_reports(self.per_variant, "F2a")
        self.running.sandbox.faults.set(Fault.latency(2000, route=route, times=None))
        self.run_workers(self.all_settled(ids), timeout=600)
        self.running.sandbox.faults.clear()
        self.record(dict.fromkeys(ids, "F2a latency 2 s"))

        variants: list[tuple[str, Fault]] = [
            ("F2b hang 60 s after storing", Fault.hang(60, route=route, when="after")),
            ("F2c slow drip", Fault.drip(0.8, route=route)),
        ]
        for status in (500, 502, 503, 504):
            for when in ("before", "after"):
                variants.append(
                    (
                        f"F3 {status} {when} storing",
                        Fault.server_error(status, route=route, when=when),
                    )
                )
        for name, build in (
            ("hang", lambda when: Fault.hang(60, route=route, when=when)),
            ("close", lambda when: Fault.drop(route=route, when=when)),
            ("reset", lambda when: Fault.connection_reset(route=route, when=when)),
            ("garbage", lambda when: Fault.garbage(route=route, when=when)),
        ):
            for when in ("after", "before"):
                variants.append((f"F5 {name} {when} storing", build(when)))
        variant_of: dict[int, str] = {}
        faults = []
        for label, fault in variants:
            for report_id in self.signed_reports(self.per_variant, label):
                variant_of[report_id] = label
                faults.append(fault)
        # Reports are sent oldest first, so the n-th first POST meets the n-th fault.
        self.running.sandbox.faults.set(*faults)
        # Hundreds of faults in a row are an outage to the circuit breaker (F1 shows it opening);
        # here it is kept shut so the run measures reconciliation rather than the breaker's pauses.
        threshold = settings.CLINIKUI_BREAKER_THRESHOLD
        settings.CLINIKUI_BREAKER_THRESHOLD = 1_000_000
        try:
            took = self.run_workers(self.all_settled(list(variant_of)), timeout=1800)
        finally:
            settings.CLINIKUI_BREAKER_THRESHOLD = threshold
        self.notes.append(f"F2/F3/F5: {len(variant_of)} reports settled in {took:.0f} s")
        self.record(variant_of)

    def f4_rate_limits_and_quotas(self) -> None:
        """F4: 429 with each kind of hint, and the two quotas (held until resumed)."""
        from reports import outbox
        from reports.models import Transmission
        from reports.sandbox.faults import Fault

        route = "POST /v1/labs"
        cases = [
            ("F4 429 Retry-After 7", Fault.rate_limited(retry_after=7, route=route)),
            (
                "F4 429 X-RateLimit-Reset 12 only",
                Fault.rate_limited(None, route=route, headers={"X-RateLimit-Reset": "12"}),
            ),
            (
                "F4 429 no hint",
                Fault.rate_limited(None, route=route, omit_headers=["X-RateLimit-Reset"]),
            ),
            ("F4 429 Retry-After 'soon'", Fault.rate_limited(retry_after="soon", route=route)),
            ("F4 429 Retry-After -5", Fault.rate_limited(retry_after="-5", route=route)),
            (
                "F4 429 Retry-After past date",
                Fault.rate_limited(retry_after="Wed, 21 Oct 2015 07:28:00 GMT", route=route),
            ),
        ]
        for label, fault in cases:
            ids = self.signed_reports(self.per_variant, label)
            self.running.sandbox.faults.set(fault)
            took = self.run_workers(self.all_settled(ids), timeout=300)
            self.notes.append(f"{label}: drained in {took:.1f} s")
            self.record(dict.fromkeys(ids, label))
        for label, fault in (
            ("F4 monthly quota", Fault.monthly_quota(route=route, times=None)),
            ("F4 sandbox quota", Fault.sandbox_quota(route=route, times=None)),
        ):
            ids = self.signed_reports(self.per_variant, label)
            self.running.sandbox.faults.set(fault)
            self.run_workers(
                lambda: Transmission.objects.filter(pk=1).exclude(hold="").exists(), timeout=60
            )
            held_at = self._posts()
            self.run_workers(lambda: False, timeout=5, quiet=True)  # held: nothing may be tried
            self.notes.append(f"{label}: {self._posts() - held_at} POSTs while held (want 0)")
            self.running.sandbox.faults.clear()
            outbox.resume_sending()
            self.run_workers(self.all_settled(ids), timeout=300)
            self.record(dict.fromkeys(ids, label))

    def f6_double_submit(self) -> None:
        """F6: 10 parallel POSTs of one signing form, per report."""
        from django.test import Client
        from django.urls import reverse

        from reports import services
        from reports.models import Submission
        from reports.payload import LOINC, CodedConcept, ReportContent

        variant_of: dict[int, str] = {}
        rows_per_trial = []
        for _ in range(self.per_variant):
            report = services.start_report(author=self.author, patient_id=self.patient_id)
            services.save_draft(
                report_id=report.pk,
                author=self.author,
                base_version=1,
                content=ReportContent(
                    patient_id=self.patient_id,
                    code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
                    category="LAB",
                    status="preliminary",
                    effective=datetime(2026, 11, 20, 7, 40, tzinfo=UTC),
                    conclusion="Fault run F6.",
                ),
            )
            clients = []
            for _ in range(10):
                client = Client()
                client.force_login(self.author)
                clients.append(client)
            data = {"password": "bench-password-1", "version": 2, "token": str(uuid.uuid4())}
            url = reverse("reports:sign", args=[report.pk])
            barrier = threading.Barrier(10, timeout=30)

            def post(client: Client, url: str = url, data: dict = data, barrier=barrier) -> None:
                barrier.wait()
                client.post(url, data)

            threads = [threading.Thread(target=post, args=[c]) for c in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            rows_per_trial.append(Submission.objects.filter(report=report).count())
            variant_of[report.pk] = "F6 10 parallel POSTs"
        self.run_workers(self.all_settled(list(variant_of)), timeout=300)
        self.notes.append(f"F6 outbox rows per trial: {sorted(Counter(rows_per_trial).items())}")
        self.record(variant_of)

    def _posts(self) -> int:
        return sum(1 for r in self.running.sandbox.store.requests if r.method == "POST")

    # --- the figures --------------------------------------------------------------------------

    def report(self, seconds: float) -> None:
        by_variant: dict[str, list[Outcome]] = defaultdict(list)
        for outcome in self.outcomes:
            by_variant[outcome.variant].append(outcome)
        for variant, outcomes in by_variant.items():
            print(f"{variant:<40} {_line(outcomes)}")
        for note in self.notes:
            print(f"# {note}")
        print(f"# whole run: {seconds:.0f} s")
        print(_line(self.outcomes))


def _line(outcomes: list[Outcome]) -> str:
    survived = sum(1 for o in outcomes if o.released and o.remote == 1)
    duplicates = sum(max(0, o.remote - 1) for o in outcomes)
    lost = sum(1 for o in outcomes if o.remote == 0)
    return f"injected={len(outcomes)} survived={survived} duplicates={duplicates} lost={lost}"


def _report_number(title: str) -> str:
    start = title.index("R-")
    return title[start : start + 8]


if __name__ == "__main__":
    main()
