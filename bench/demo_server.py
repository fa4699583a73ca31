"""The production server command over a throwaway demo database, for the B3 and B4 benchmarks.

`DemoServer` prepares a scratch SQLite database (migrate, the starter terminology, the demo
users, the clinician's 50 drafts of which one has 30 versions, and 11 signed final reports in the
supervisor's review queue, one of them by `clinician2` with 30 versions) and a scratch STATIC_ROOT
(collectstatic: hashed names with gzip and Brotli copies, as production serves them), starts
gunicorn with 2 workers on a free 127.0.0.1 port in the `demo` environment with the in-process
sandbox API, and stops it and removes the scratch folder on exit, whatever happens. Every step
has a deadline.

    with DemoServer() as server:
        cookie = server.sign_in()          # "sessionid=…", from the real login form
        server.url(f"/reports/{server.long_draft_id}/")
        supervisor = server.sign_in(SUPERVISOR)
        server.url(f"/review/{server.review_report_id}/")

Run as `python bench/demo_server.py seed` (with the environment `DemoServer` sets) it only
writes the drafts and the reports awaiting review; that is how `DemoServer` calls it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
USERNAME = "clinician"
SECOND_CLINICIAN = "clinician2"
SUPERVISOR = "supervisor"
PASSWORD = "clinikui-demo"  # the demo users' password (create_demo_users)
DRAFTS = 50
VERSIONS = 30
# Signed final reports awaiting review besides the long one (CLINIKUI_REVIEW_REQUIRED is on).
MORE_IN_REVIEW = 10
SETUP_TIMEOUT = 300.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


# Debian's Chromium for the browser benchmarks, started as this machine needs (no sandbox as
# root, and no background connections to hosts the closed network refuses).
CHROMIUM = os.environ.get("CLINIKUI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_for_quiet_machine(*, below: float = 1.5, timeout: float = 300.0) -> float:
    """Waits (up to `timeout`) until the 1-minute load average is below `below`; returns it.

    The machine is shared: figures measured while others' tests run are noisy, so each run
    records the load it was measured at.
    """
    deadline = time.monotonic() + timeout
    load = load_average()
    while load >= below and time.monotonic() < deadline:
        print(f"  waiting for a quieter machine: load {load:.2f} (want < {below})", flush=True)
        time.sleep(15)
        load = load_average()
    return load


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoServer:
    """gunicorn (2 sync workers) serving `clinikui.wsgi` over a freshly seeded demo database."""

    def __init__(self, *, workers: int = 2, threads: int = 1) -> None:
        self.workers = workers
        self.threads = threads
        self.scratch = Path(tempfile.mkdtemp(prefix="clinikui-demo-server-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.long_draft_id = 0
        self.draft_ids: list[int] = []
        self.review_report_id = 0
        self.review_ids: list[int] = []
        self.env = {
            **os.environ,
            "CLINIKUI_ENVIRONMENT": "demo",
            "CLINIKAPI_BASE_URL": "sandbox",
            # SQLite as the settings configure it (WAL, synchronous=NORMAL, IMMEDIATE).
            "DATABASE_URL": f"sqlite:///{self.scratch / 'demo.sqlite3'}",
            "STATIC_ROOT": str(self.scratch / "static"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> DemoServer:
        try:
            self._prepare_database()
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(PYTHON), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
            check=True,
        )
        return done.stdout

    def _prepare_database(self) -> None:
        self._manage("collectstatic", "--noinput")
        self._manage("migrate", "--noinput")
        self._manage("load_starter_terminology")
        self._manage("create_demo_users")
        done = subprocess.run(
            [str(PYTHON), str(Path(__file__).resolve()), "seed"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
            check=True,
        )
        seeded = json.loads(done.stdout.strip().splitlines()[-1])
        self.long_draft_id = int(seeded["long_draft_id"])
        self.draft_ids = [int(pk) for pk in seeded["draft_ids"]]
        self.review_report_id = int(seeded["review_report_id"])
        self.review_ids = [int(pk) for pk in seeded["review_ids"]]

    def _start(self) -> None:
        command = [
            str(GUNICORN),
            "clinikui.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--log-level",
            "warning",
            "--error-logfile",
            str(self.scratch / "gunicorn.log"),
        ]
        # Its own process group, so stopping it stops its workers too and nothing else.
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, start_new_session=True, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start-up: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/ping/"), timeout=2) as response:
                    if response.status == 200:
                        # Load the application in both workers before anyone measures.
                        for _ in range(self.workers * 4):
                            urllib.request.urlopen(self.url("/ping/"), timeout=5).close()
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {START_TIMEOUT:.0f} s")

    def log_tail(self) -> str:
        log = self.scratch / "gunicorn.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def sign_in(self, username: str = USERNAME) -> str:
        """Signs `username` (a demo user) in through the login form, as a browser does; returns
        the Cookie header value."""
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = self.url("/accounts/login/")
        with opener.open(login, timeout=10) as response:
            page = response.read().decode()
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if not match:
            raise RuntimeError("no CSRF token on the login page")
        body = urllib.parse.urlencode(
            {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": match[1]}
        ).encode()
        request = urllib.request.Request(login, data=body, headers={"Referer": login})
        with opener.open(request, timeout=10) as response:
            if "/accounts/login/" in response.url:
                raise RuntimeError(f"signing in as {username} failed")
        cookies = {cookie.name: cookie.value for cookie in jar}
        if "sessionid" not in cookies:
            raise RuntimeError("no session cookie after signing in")
        return "; ".join(f"{name}={value}" for name, value in cookies.items())

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.scratch, ignore_errors=True)


def seed() -> None:
    """The clinician's drafts: 50 filled-in drafts, the first of them with 30 versions; and the
    supervisor's review queue: `clinician2`'s final report with 30 versions and 10 more final
    reports (2 versions each, by either clinician), each signed by its author through the real
    signing workflow, so awaiting review."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinikui.settings")
    django.setup()

    import uuid
    from datetime import UTC, datetime
    from typing import Any

    from django.contrib.auth.models import User
    from django.test import RequestFactory

    from reports import services, workflow
    from reports.models import Report, ReportState
    from reports.payload import CodedConcept, ReportContent
    from reports.sandbox.seed import FIXED_PATIENT_ID

    author = User.objects.get(username=USERNAME)
    second = User.objects.get(username=SECOND_CLINICIAN)
    options = services.get_composer_options(patient_id=FIXED_PATIENT_ID)
    encounter = options.encounters[0].id if options.encounters else ""
    results = tuple(o.id for o in options.observations[:4])
    specimens = tuple(s.id for s in options.specimens[:1])
    performer = options.practitioners[0].id if options.practitioners else ""

    def content(number: int, status: str = "preliminary") -> ReportContent:
        return ReportContent(
            patient_id=FIXED_PATIENT_ID,
            encounter_id=encounter,
            code=CodedConcept(
                system="http://loinc.org", code="58410-2", display="CBC panel - Blood"
            ),
            category="LAB",
            status=status,
            effective=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
            result_ids=results,
            specimen_ids=specimens,
            performer=performer,
            results_interpreter=performer,
            conclusion=(
                f"Version {number}. Mild normocytic anaemia (haemoglobin {118 + number % 7} g/L); "
                "white cells and platelets within the reference ranges. Suggest ferritin and "
                "a repeat count in four weeks."
            ),
            conclusion_codes=(
                CodedConcept(system="http://snomed.info/sct", code="271737000", display="Anemia"),
            ),
        )

    draft_ids: list[int] = []
    for index in range(DRAFTS):
        report = services.start_report(author=author, patient_id=FIXED_PATIENT_ID)
        versions = VERSIONS if index == 0 else 2
        for number in range(2, versions + 1):
            services.save_draft(
                report_id=report.pk,
                author=author,
                base_version=number - 1,
                content=content(number),
            )
        draft_ids.append(report.pk)

    def awaiting_review(writer: User, versions: int) -> int:
        """A final report with `versions` versions, signed by `writer` as the tests sign one."""
        report = services.start_report(author=writer, patient_id=FIXED_PATIENT_ID)
        for number in range(2, versions + 1):
            services.save_draft(
                report_id=report.pk,
                author=writer,
                base_version=number - 1,
                content=content(number, status="final"),
            )
        report.refresh_from_db()
        result = workflow.sign_report(
            request=RequestFactory().post("/", HTTP_HOST="127.0.0.1"),
            report_id=report.pk,
            signer=writer,
            password=PASSWORD,
            version_number=report.head,
            token=uuid.uuid4(),
        )
        if result.report.state != ReportState.AWAITING_REVIEW:
            raise RuntimeError(f"report {report.pk} is {result.report.state}, not in review")
        return report.pk

    review_ids = [awaiting_review(second, VERSIONS)]
    for index in range(MORE_IN_REVIEW):
        review_ids.append(awaiting_review(second if index % 2 else author, 2))
    in_review = Report.objects.filter(state=ReportState.AWAITING_REVIEW).count()
    if in_review != len(review_ids):
        raise RuntimeError(f"{in_review} reports await review, not {len(review_ids)}")
    seeded: dict[str, Any] = {
        "long_draft_id": draft_ids[0],
        "draft_ids": draft_ids,
        "review_report_id": review_ids[0],
        "review_ids": review_ids,
    }
    print(json.dumps(seeded))


if __name__ == "__main__":
    if sys.argv[1:] == ["seed"]:
        seed()
    else:
        sys.exit("usage: python bench/demo_server.py seed  (called by DemoServer)")
