"""Load: 50 simulated clinicians for 3 minutes against a production-like stack (issue 7).

Starts, all on 127.0.0.1 and all removed on exit (Ctrl-C included):

* a throwaway PostgreSQL 15 cluster (fsync off; as root it belongs to the `postgres` OS user,
  as in bin/test), migrated, with the starter terminology, the demo users and 50 clinicians;
* the ClinikAPI sandbox over a socket (`manage.py sandbox_api`: 10 s search lag, a per-minute
  limit high enough for the load);
* gunicorn (2 sync workers) on `clinikui.wsgi` in the `production` environment (DEBUG off,
  secure cookies; the clients say `X-Forwarded-Proto: https` as the TLS proxy would) and one
  `manage.py release_worker`; with `--scale-out`, two gunicorn instances on two ports and two
  release workers on the same database;
* Locust, headless, with the simulated clinicians of `bench/locustfile.py`.

Then it waits until the workers have sent every signed report, stops them, and prints p50/p95/
p99 per action and in total, the errors, the LOST AUTOSAVES (for every report a simulated
clinician wrote, the newest version's conclusion in the database must equal the last text its
autosave got a 200 for), and what ClinikAPI holds per local report (the sandbox's own store:
the signed PDF's title names the local report number), "reports sent twice" among it.

    .venv/bin/python bench/load.py                 # 50 clinicians, 3 minutes, one instance
    .venv/bin/python bench/load.py --scale-out     # two instances, two release workers
    .venv/bin/python bench/load.py --users 5 --duration 30s    # a quick look

Needs the `bench` extras (`pip install -e '.[bench]'` or `pip install locust`) and PostgreSQL
15 binaries in /usr/lib/postgresql/15/bin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_server import free_port, load_average, wait_for_quiet_machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
PGBIN = Path("/usr/lib/postgresql/15/bin")
ACCOUNT_PASSWORD = "load-bench-Passw0rd"
API_KEY = "clk_test_loadbench"
SETUP_TIMEOUT = 300.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# A step in flight when the time is up may finish (no request is cut off mid-way).
LOCUST_STOP_TIMEOUT = 30
# Targets (shared/RELIABILITY.md §5 "Load", L1): autosave p95 < 300 ms, p99 < 1 s; 0 errors,
# 0 lost autosaves; 0 duplicate remote reports.
AUTOSAVE_P95_MS = 300.0
AUTOSAVE_P99_MS = 1000.0
AUTOSAVE = "autosave"
RAMP_SECONDS = 60


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (the value below which `share` of the samples lie)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


class Stack:
    """Every process this run starts, each in its own process group, stopped in reverse order."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.pg_data: Path | None = None
        self.as_postgres: list[str] = []

    # --- PostgreSQL ----------------------------------------------------------------------------

    def start_postgres(self) -> str:
        """A throwaway cluster on a free loopback port (bin/test's recipe); returns its URL."""
        pgdir = self.scratch / "pg"
        pgdir.mkdir(mode=0o700)
        if os.getuid() == 0:
            # PostgreSQL refuses to run as root: the cluster belongs to the `postgres` OS user.
            shutil.chown(pgdir, user="postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        port = free_port()
        self.pg_data = pgdir / "data"
        self._pg(
            "initdb",
            "-D",
            str(self.pg_data),
            "-U",
            "clinikui",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories={pgdir} -c fsync=off"
        )
        log = pgdir / "server.log"
        self._pg("pg_ctl", "-D", str(self.pg_data), "-l", str(log), "-w", "-o", options, "start")
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "clinikui", "clinikui")
        return f"postgres://clinikui@127.0.0.1:{port}/clinikui"

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_postgres, str(PGBIN / program), *args],
            check=True,
            capture_output=True,
            timeout=SETUP_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )

    # --- processes -----------------------------------------------------------------------------

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.scratch / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the child)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C reaches us, we stop it in order
        )
        log.close()
        self.processes.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the process's group (gunicorn's workers too), SIGKILL if it lingers."""
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
            except ProcessLookupError:
                pass

    def log(self, name: str) -> str:
        path = self.scratch / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for _, process in reversed(self.processes):
            self.stop(process)
        if self.pg_data is not None:
            subprocess.run(
                [
                    *self.as_postgres,
                    str(PGBIN / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                timeout=SETUP_TIMEOUT,
                check=False,
            )
        shutil.rmtree(self.scratch, ignore_errors=True)


def wait_until_answering(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within {START_TIMEOUT:.0f} s")


def warm_up(base_url: str) -> None:
    """A few page loads, so both workers have imported the views and compiled the templates
    before anyone measures (a production server has been up for a while)."""
    request = urllib.request.Request(
        f"{base_url}/accounts/login/", headers={"X-Forwarded-Proto": "https"}
    )
    for _ in range(8):
        urllib.request.urlopen(request, timeout=30).close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


@contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, so everything started is stopped and removed."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Options:
    users: int
    spawn_rate: int
    duration: str
    scale_out: bool
    sign_share: float
    api_rate_limit: int
    search_lag: float
    drain_timeout: float
    csv_dir: Path | None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="simulated clinicians")
    parser.add_argument("--spawn-rate", type=int, default=10, help="users started per second")
    parser.add_argument("--duration", default="3m", help="Locust run time (e.g. 3m, 30s)")
    parser.add_argument(
        "--scale-out", action="store_true", help="two gunicorn instances, two release workers"
    )
    parser.add_argument("--sign-share", type=float, default=0.35, help="share of reports signed")
    parser.add_argument(
        "--api-rate-limit", type=int, default=6000, help="sandbox requests per minute"
    )
    parser.add_argument("--search-lag", type=float, default=10.0, help="sandbox search lag, s")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="seconds")
    parser.add_argument("--csv-dir", type=Path, help="keep Locust's CSV files here")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for load < 1.5")
    args = parser.parse_args()
    if shutil.which("locust", path=str(VENV_BIN)) is None:
        sys.exit("Locust is missing: .venv/bin/pip install -e '.[bench]'")
    if not (PGBIN / "initdb").exists():
        sys.exit(f"PostgreSQL 15 is missing ({PGBIN}): apt-get install -y postgresql-15")
    options = Options(
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=args.duration,
        scale_out=args.scale_out,
        sign_share=args.sign_share,
        api_rate_limit=args.api_rate_limit,
        search_lag=args.search_lag,
        drain_timeout=args.drain_timeout,
        csv_dir=args.csv_dir,
    )
    if not args.no_wait:
        wait_for_quiet_machine(timeout=900)
    scratch = Path(tempfile.mkdtemp(prefix="clinikui-load-"))
    os.chmod(scratch, 0o755)
    stack = Stack(scratch)
    with stopped_by_sigterm():
        try:
            run(stack, options)
        except KeyboardInterrupt:
            print("\nInterrupted: stopping everything that was started.", flush=True)
            raise SystemExit(130) from None
        finally:
            close_django()
            stack.close()


# --- the run ----------------------------------------------------------------------------------


def run(stack: Stack, options: Options) -> None:
    instances = 2 if options.scale_out else 1
    variant = f"{instances} gunicorn instance(s) of 2 workers, {instances} release worker(s)"
    print(f"# load: {options.users} clinicians, {options.duration}, {variant}", flush=True)
    print(f"# load average at start {load_average():.2f}", flush=True)

    database_url = stack.start_postgres()
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    common = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CLINIKAPI_BASE_URL": sandbox_url,
        "CLINIKAPI_SECRET_KEY": API_KEY,
        "STATIC_ROOT": str(stack.scratch / "static"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
    }
    # Setting up (demo users, migrations) is refused in production; the servers run in it.
    setup_env = {**common, "CLINIKUI_ENVIRONMENT": "development", "DEBUG": "false"}
    server_env = {
        **common,
        "CLINIKUI_ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
    }
    server_env.pop("DEBUG", None)

    started = time.monotonic()
    for command in (
        ["migrate", "--noinput"],
        ["collectstatic", "--noinput"],
        ["load_starter_terminology"],
        ["create_demo_users"],
    ):
        subprocess.run(
            [str(PYTHON), "manage.py", *command],
            cwd=ROOT,
            env=setup_env,
            check=True,
            capture_output=True,
            timeout=SETUP_TIMEOUT,
        )
    usernames = create_clinicians(setup_env, options.users)
    print(f"# database ready in {time.monotonic() - started:.0f} s", flush=True)

    sandbox = stack.start(
        "sandbox",
        [
            str(PYTHON),
            "manage.py",
            "sandbox_api",
            "--port",
            str(sandbox_port),
            "--lag",
            str(options.search_lag),
            "--rate-limit",
            str(options.api_rate_limit),
        ],
        setup_env,
    )
    wait_until_answering(f"{sandbox_url}/health", sandbox, "the sandbox")
    hosts = []
    for number in range(instances):
        port = free_port()
        name = f"gunicorn-{number + 1}"
        server = stack.start(
            name,
            [
                str(VENV_BIN / "gunicorn"),
                "clinikui.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            server_env,
        )
        wait_until_answering(f"http://127.0.0.1:{port}/ping/", server, name)
        warm_up(f"http://127.0.0.1:{port}")
        hosts.append(f"http://127.0.0.1:{port}")
    workers = [
        stack.start(
            f"release-worker-{number + 1}",
            [str(PYTHON), "manage.py", "release_worker", "--poll", "0.5"],
            server_env,
        )
        for number in range(instances)
    ]
    print(f"# serving on {', '.join(hosts)}; ClinikAPI sandbox on {sandbox_url}", flush=True)

    from reports.sandbox.seed import FIXED_PATIENT_ID

    results_path = stack.scratch / "locust-results.json"
    csv_prefix = (options.csv_dir or stack.scratch) / ("scale-out" if options.scale_out else "load")
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    locust_env = {
        **os.environ,
        "LOAD_HOSTS": ",".join(hosts),
        "LOAD_USERNAMES": ",".join(usernames),
        "LOAD_PASSWORD": ACCOUNT_PASSWORD,
        "LOAD_PATIENT_ID": FIXED_PATIENT_ID,
        "LOAD_SIGN_SHARE": str(options.sign_share),
        "LOAD_RESULTS": str(results_path),
    }
    locust = stack.start(
        "locust",
        [
            str(VENV_BIN / "locust"),
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(options.users),
            "-r",
            str(options.spawn_rate),
            "-t",
            options.duration,
            "--stop-timeout",
            str(LOCUST_STOP_TIMEOUT),
            "--host",
            hosts[0],
            "--csv",
            str(csv_prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
        ],
        locust_env,
    )
    load_started = time.monotonic()
    locust.wait()
    print(
        f"# Locust ran {time.monotonic() - load_started:.0f} s; load average "
        f"{load_before:.2f} at its start, {load_average():.2f} at its end",
        flush=True,
    )
    if locust.returncode != 0 or not results_path.exists():
        raise RuntimeError(f"Locust failed ({locust.returncode}):\n{stack.log('locust')[-3000:]}")
    results = json.loads(results_path.read_text())

    drained = drain(options.drain_timeout)
    for worker in workers:
        stack.stop(worker)
    print(f"# release workers drained the queue in {drained:.0f} s after the load", flush=True)

    samples = results["samples"]
    print_latency(samples, title="Whole run")
    # 50 sign-ins in 5 s queue behind each other's password hashing for ~15 s: the rest of the
    # run is what clinicians see once everyone is at work.
    begin = min(s["at"] for s in samples) + RAMP_SECONDS
    print_latency(
        [s for s in samples if s["at"] >= begin],
        title=f"Without the first {RAMP_SECONDS} s (everyone signing in at once)",
    )
    server_errors = count_server_errors(stack)
    lost = check_autosaves(results["reports"])
    print_releases(sandbox_url, options.api_rate_limit)
    if server_errors:
        print("# server log lines with errors (first 40):")
        for line in server_errors[:40]:
            print(f"#   {line}")
    failures = sum(1 for s in samples if s["error"])
    kinds = Counter(f"{s['name']}: {s['error']}" for s in samples if s["error"])
    for kind, count in kinds.most_common(20):
        print(f"# failed {count}× {kind}")
    print(f"errors: {failures} failed requests, {len(server_errors)} error lines in server logs")
    print(f"LOST AUTOSAVES: {lost}")


def create_clinicians(env: dict[str, str], count: int) -> list[str]:
    """`count` clinician accounts (load-clinician-01 …) with one password, created directly."""
    setup_django(env)
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    from reports.roles import CLINICIAN, ensure_roles

    ensure_roles()
    group = Group.objects.get(name=CLINICIAN)
    password = make_password(ACCOUNT_PASSWORD)  # hashed once: 50 hashes would take ~15 s
    usernames = [f"load-clinician-{n:02d}" for n in range(1, count + 1)]
    for number, username in enumerate(usernames, start=1):
        user = User.objects.create(
            username=username,
            first_name="Load",
            last_name=f"Clinician {number}",
            password=password,
        )
        user.groups.add(group)
    return usernames


def setup_django(env: dict[str, str]) -> None:
    """This process reads the database directly, with the settings of the setup commands."""
    for name in (
        "CLINIKUI_ENVIRONMENT",
        "DATABASE_URL",
        "CLINIKAPI_BASE_URL",
        "CLINIKAPI_SECRET_KEY",
        "STATIC_ROOT",
        "ALLOWED_HOSTS",
        "DEBUG",
    ):
        os.environ[name] = env[name]
    os.environ["DJANGO_SETTINGS_MODULE"] = "clinikui.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def close_django() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def drain(timeout: float) -> float:
    """Waits until no release is waiting (pending, sending, unknown); returns the seconds."""
    from reports.models import Submission

    started = time.monotonic()
    while Submission.objects.waiting().exists():
        if time.monotonic() - started > timeout:
            waiting = Counter(Submission.objects.waiting().values_list("state", flat=True))
            print(f"# drain timed out after {timeout:.0f} s: {dict(waiting)}", flush=True)
            break
        time.sleep(1.0)
    return time.monotonic() - started


# --- the figures ------------------------------------------------------------------------------


def print_latency(samples: list[dict[str, Any]], *, title: str) -> None:
    if not samples:
        return
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        by_name[sample["name"]].append(sample)
    print(f"\n{title}")
    print(
        f"\n{'action':<30}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}"
    )
    rows = [*sorted(by_name.items()), ("total", samples)]
    for name, group in rows:
        times = [s["ms"] for s in group]
        failed = sum(1 for s in group if s["error"])
        print(
            f"{name:<30}{len(group):>9}{failed:>8}{percentile(times, 0.50):>9.1f}"
            f"{percentile(times, 0.95):>9.1f}{percentile(times, 0.99):>9.1f}{max(times):>9.1f}"
        )
    autosaves = [s["ms"] for s in by_name.get(AUTOSAVE, [])]
    if autosaves:
        p95, p99 = percentile(autosaves, 0.95), percentile(autosaves, 0.99)
        print(
            f"autosave p95 {p95:.0f} ms (target < {AUTOSAVE_P95_MS:.0f}: "
            f"{'met' if p95 < AUTOSAVE_P95_MS else 'MISSED'}), p99 {p99:.0f} ms "
            f"(target < {AUTOSAVE_P99_MS:.0f}: {'met' if p99 < AUTOSAVE_P99_MS else 'MISSED'}); "
            f"mean {statistics.fmean(autosaves):.0f} ms"
        )


def count_server_errors(stack: Stack) -> list[str]:
    """Lines of the servers' and workers' logs that report an error or a traceback."""
    lines = []
    for name, _ in stack.processes:
        if name.startswith(("gunicorn", "release-worker", "sandbox")):
            for line in stack.log(name).splitlines():
                if re.search(r"\b(ERROR|CRITICAL)\b|Traceback", line):
                    lines.append(f"{name}: {line[:300]}")
    return lines


def check_autosaves(reports: list[dict[str, Any]]) -> int:
    """Compares the newest version in the database with what each clinician was told."""
    from reports.models import Report, ReportVersion

    heads = dict(Report.objects.values_list("pk", "head"))
    wanted = {(r["report_id"], heads.get(r["report_id"])) for r in reports}
    stored = {
        report_id: content.get("conclusion", "")
        for report_id, number, content in ReportVersion.objects.filter(
            report_id__in=[r["report_id"] for r in reports]
        ).values_list("report_id", "number", "content")
        if (report_id, number) in wanted
    }
    lost = unacknowledged = 0
    for record in reports:
        text = stored.get(record["report_id"])
        if text == record["last_saved"]:
            continue
        if text in record["unacknowledged"]:
            # Saved, but the clinician never heard (the request failed on the way back).
            unacknowledged += 1
            continue
        lost += 1
        print(
            f"# LOST: report {record['report_id']} of {record['username']}: stored "
            f"{(text or '')[-60:]!r}, last acknowledged {record['last_saved'][-60:]!r}"
        )
    autosaves = sum(r["autosaves_ok"] for r in reports)
    print(
        f"\nreports written: {len(reports)}; autosaves answered 200: {autosaves}; newest version "
        f"equals the last acknowledged text: {len(reports) - lost - unacknowledged}; saved "
        f"without the answer reaching the clinician: {unacknowledged}"
    )
    return lost


def print_releases(sandbox_url: str, rate_limit: int) -> None:
    """Signed and released reports, and ClinikAPI's copies of each (the sandbox's own store)."""
    from reports.models import Report, ReportState, Submission, SubmissionState

    labs = get_json(f"{sandbox_url}/_sandbox/resources/labs?environment=test")["resources"]
    remote: Counter[str] = Counter()
    for lab in labs:
        for item in lab.get("presentedForm") or ():
            match = re.search(r"ClinikUI report (R-\d+) ", item.get("title") or "")
            if match:
                remote[match[1]] += 1
    signed = Report.objects.exclude(state=ReportState.DRAFT)
    numbers = {report.number: report.state for report in signed}
    released = sum(1 for state in numbers.values() if state == ReportState.RELEASED)
    sent = Submission.objects.filter(state=SubmissionState.SENT).count()
    other = Counter(
        Submission.objects.exclude(state=SubmissionState.SENT).values_list("state", flat=True)
    )
    twice = sum(1 for number in numbers if remote[number] > 1)
    extra = sum(max(0, remote[number] - 1) for number in numbers)
    missing = sum(1 for number in numbers if remote[number] == 0)
    orphans = sum(count for number, count in remote.items() if number not in numbers)
    print(
        f"signed: {len(numbers)}; released: {released}; outbox rows sent: {sent}"
        + (f"; not sent: {dict(other)}" if other else "")
    )
    print(
        f"ClinikAPI holds {sum(remote.values())} reports from ClinikUI: reports sent twice: "
        f"{twice} ({extra} extra copies); signed but not in ClinikAPI: {missing}; remote "
        f"reports with no local report: {orphans}"
    )
    requests = get_json(f"{sandbox_url}/_sandbox/requests")["requests"]
    peak = peak_per_minute(sorted(r["at"] for r in requests))
    posts = sum(1 for r in requests if r["method"] == "POST" and r["path"] == "/v1/labs")
    print(
        f"API calls at the sandbox: {len(requests)} ({posts} POST /v1/labs); peak in any "
        f"60 s: {peak} (sandbox limit set to {rate_limit}/min)"
    )


def peak_per_minute(times: list[float]) -> int:
    """The most requests in any 60-second window (times sorted, in seconds)."""
    peak = first = 0
    for last, at in enumerate(times):
        while at - times[first] >= 60:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


if __name__ == "__main__":
    main()
