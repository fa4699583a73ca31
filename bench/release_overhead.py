"""B5: what releasing through the outbox costs on top of a raw POST to the same emulator.

For each of N signed reports the worker's send step is timed: claim the row, verify the
signature, build the body with its files, POST through the pooled client, store the outcome, the
report's new state and the audit event. The signed PDF is rendered beforehand (a one-time cost per
release, measured by bench/pdf_render.py, B6). In the same run a raw `httpx.Client.post` of each
same body is timed against the same sandbox, and the sandbox counts the TCP connections it
accepted from the worker's client.

    .venv/bin/python bench/release_overhead.py [--count 100] [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCRATCH = Path(tempfile.mkdtemp(prefix="clinikui-b5-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinikui.settings")
os.environ.setdefault("CLINIKUI_ENVIRONMENT", "development")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{SCRATCH / 'b5.sqlite3'}")
os.environ.setdefault("CLINIKAPI_SECRET_KEY", "clk_test_releasebench")
os.environ.setdefault("CLINIKUI_REVIEW_REQUIRED", "false")
os.environ.setdefault("LOG_LEVEL", "ERROR")
os.environ["CLINIKAPI_BASE_URL"] = "http://127.0.0.1:9"  # replaced once the sandbox is up

import django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--delay-ms", type=int, default=0, help="latency injected by the sandbox")
    parser.add_argument(
        "--profile", action="store_true", help="print where the release step spends"
    )
    args = parser.parse_args()

    from reports.sandbox import Sandbox, SandboxConfig
    from reports.sandbox.server import serve_in_thread

    running = serve_in_thread(
        Sandbox(SandboxConfig(rate_limit_per_minute=1_000_000, latency_ms=args.delay_ms))
    )
    os.environ["CLINIKAPI_BASE_URL"] = running.url
    django.setup()
    import httpx
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import RequestFactory

    from reports import clinikapi, outbox, services, workflow
    from reports.models import Submission
    from reports.payload import LOINC, SNOMED_CT, CodedConcept, ReportContent
    from reports.sandbox.seed import FIXED_PATIENT_ID

    settings.CLINIKAPI_BASE_URL = running.url
    call_command("migrate", verbosity=0)
    connections_at_start = running.connections_accepted
    author = User.objects.create_user("b5", password="b5-password-1", first_name="Bench")
    api = clinikapi.get_client()
    results = tuple(
        sorted(
            o.id for o in clinikapi.iter_all(api.search_observations, patient_id=FIXED_PATIENT_ID)
        )[:3]
    )
    worker = outbox.Worker(name="b5")

    # Prepare every submission first: draft, sign, render the signed PDF.
    for number in range(args.count):
        report = services.start_report(author=author, patient_id=FIXED_PATIENT_ID)
        content = ReportContent(
            patient_id=FIXED_PATIENT_ID,
            code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
            category="LAB",
            status="preliminary",
            effective=datetime(2026, 11, 20, 7, 40, tzinfo=UTC),
            result_ids=results,
            conclusion=f"Mild normocytic anaemia ({number}).",
            conclusion_codes=(CodedConcept(SNOMED_CT, "271737000", "Anemia"),),
        )
        services.save_draft(report_id=report.pk, author=author, base_version=1, content=content)
        result = workflow.sign_report(
            request=RequestFactory().post("/"),
            report_id=report.pk,
            signer=author,
            password="b5-password-1",
            version_number=2,
            token=uuid.uuid4(),
        )
        assert result.submission is not None
        worker._prepare_pdf(result.submission)
    bodies = [worker.request_body(s) for s in Submission.objects.order_by("pk")]

    release_ms = []
    profile = cProfile.Profile()
    for _ in range(args.count):
        started = time.perf_counter()
        if args.profile:
            profile.enable()
        assert worker.step()
        if args.profile:
            profile.disable()
        release_ms.append((time.perf_counter() - started) * 1000)
        # Read-back is a separate step of the worker; keep it out of the next timing.
        Submission.objects.filter(read_back="").update(read_back="match")
    # Everything the app's pooled client did: reading results, preparing, 100 releases.
    release_connections = running.connections_accepted - connections_at_start

    raw_ms = []
    with httpx.Client(base_url=running.url, timeout=30) as raw:
        for body in bodies:
            started = time.perf_counter()
            reply = raw.post(
                "/v1/labs", json=body, headers={"x-api-key": settings.CLINIKAPI_SECRET_KEY}
            )
            raw_ms.append((time.perf_counter() - started) * 1000)
            assert reply.status_code in (200, 201), reply.status_code
    running.stop()

    sent = Submission.objects.filter(state="sent").count()
    print(
        f"# B5: {args.count} sequential releases, sandbox latency {args.delay_ms} ms, "
        f"body {len(str(bodies[0])) // 1024} KiB with the signed PDF"
    )
    print(f"release step  {_figures(release_ms)}")
    print(f"raw POST      {_figures(raw_ms)}")
    p95_release, p95_raw = _p95(release_ms), _p95(raw_ms)
    if args.profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    print(
        f"p95 overhead {p95_release - p95_raw:.1f} ms, ratio {p95_release / p95_raw:.2f}; "
        f"TCP connections of the app's client for all of it: {release_connections}; sent {sent}"
    )


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


def _figures(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):6.1f} ms  p95 {_p95(values):6.1f} ms  "
        f"max {max(values):6.1f} ms"
    )


if __name__ == "__main__":
    main()
