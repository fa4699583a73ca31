"""F15/F16 — a canary API key and a canary patient through a real session; then a leak scan.

Run by bench/security.py (`python bench/security_canary.py` prints one JSON line). Processes as
deployed, over a throwaway SQLite database:

* the ClinikAPI sandbox as its own server (`manage.py sandbox_api --port N --key <canary>`),
  accepting only the canary key `clk_test_CANARY<random>`; a canary patient with a unique
  surname (and an encounter, results, a specimen) is created in it through the API itself;
* ClinikUI under gunicorn with that key, every logger at DEBUG (bench/security_canary_settings),
  stdout and stderr (with gunicorn's access log) captured;
* Chromium (Playwright): a clinician signs in, searches the canary's surname, starts a report,
  composes it (the conclusion carries a canary phrase), signs it; `manage.py release_worker
  --once` releases it; the clinician then opens the release, history, chart, signed list,
  notifications and payload pages. Every response body the browser received, every URL and
  request header it sent, its cookies, localStorage and sessionStorage are kept;
* the database afterwards: `manage.py dumpdata` and SQLite's own `.dump` (iterdump).

The key is then looked for everywhere (and anything shaped like a ClinikAPI key); the surname
and the phrase in the logs, URLs, browser storage and the audit trail's details. Pages and the
reports table show the patient's name by design: they are counted, as proof the canary was
really there, not as leaks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
CHROMIUM = os.environ.get("CLINIKUI_CHROMIUM", "/usr/bin/chromium")
USERNAME, PASSWORD = "clinician", "clinikui-demo"  # manage.py create_demo_users
KEY_SHAPE = re.compile(r"clk_(?:live|test)_[A-Za-z0-9]+")
REDACTED = "clk_test_[redacted]"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, *, timeout: float = 30.0, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited at start-up")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def api(base: str, key: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"x-api-key": key, "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    data: dict[str, Any] = answer.get("data", answer)
    return data


def plant_canary(base: str, key: str, surname: str) -> dict[str, str]:
    """The canary patient with what a report needs, created through ClinikAPI's own routes."""
    patient = api(
        base,
        key,
        "POST",
        "/v1/patients",
        {
            "firstName": "Quillon",
            "lastName": surname,
            "gender": "female",
            "birthDate": "1961-07-14",
            "email": f"{surname.lower()}@example.net",
        },
    )
    encounter = api(
        base,
        key,
        "POST",
        "/v1/encounters",
        {
            "status": "finished",
            "class": "AMB",
            "patientId": patient["id"],
            "type": "follow-up",
            "period": {"start": "2026-11-20T07:00:00Z", "end": "2026-11-20T07:30:00Z"},
        },
    )
    specimen = api(
        base,
        key,
        "POST",
        "/v1/specimens",
        {"patientId": patient["id"], "status": "available", "type": "blood"},
    )
    for code, display, value, unit in (
        ("718-7", "Hemoglobin [Mass/volume] in Blood", 11.1, "g/dL"),
        ("777-3", "Platelets [#/volume] in Blood by Automated count", 240, "10*3/uL"),
    ):
        api(
            base,
            key,
            "POST",
            "/v1/observations",
            {
                "status": "final",
                "code": {"system": "http://loinc.org", "code": code, "display": display},
                "patientId": patient["id"],
                "encounterId": encounter["id"],
                "specimenId": specimen["id"],
                "category": "laboratory",
                "effectiveDateTime": "2026-11-20T07:20:00Z",
                "valueQuantity": {"value": value, "unit": unit},
                "interpretation": "N",
            },
        )
    return {"patient": patient["id"], "encounter": encounter["id"]}


class Session:
    """The browser side: every body received, every URL and header sent."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.bodies: list[tuple[str, str]] = []
        self.urls: list[str] = []
        self.headers: list[str] = []
        self.storage: list[str] = []
        self.cookies: list[str] = []

    def run(self, *, surname: str, phrase: str, after_signing: Any) -> None:
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
            )
            context = browser.new_context()
            pending: list[Any] = []

            def on_request(request: Any) -> None:
                self.urls.append(request.url)
                self.headers.append(json.dumps(request.headers))

            def on_response(response: Any) -> None:
                pending.append(response)

            context.on("request", on_request)
            context.on("response", on_response)
            page = context.new_page()

            def keep() -> None:
                """The bodies of every response so far, and the page as it is now."""
                while pending:
                    response = pending.pop(0)
                    if response.request.resource_type in ("document", "xhr", "fetch"):
                        # A redirect has no body to read.
                        with contextlib.suppress(Exception):
                            self.bodies.append((response.url, response.text()))
                self.bodies.append((page.url, page.content()))

            base = self.base
            page.goto(f"{base}/accounts/login/")
            page.get_by_label("Username").fill(USERNAME)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state("load")
            keep()
            page.goto(f"{base}/reports/new/")
            search = page.get_by_label("Name", exact=True)
            search.fill(surname)
            search.press("Enter")
            page.locator("#patient-table").wait_for(timeout=15_000)
            keep()
            page.locator("#patient-table button[type=submit]").first.click()
            expect(page.locator("#report-form")).to_be_visible(timeout=15_000)
            keep()
            page.get_by_label("Encounter").focus()
            page.keyboard.press("ArrowDown")
            _pick(page, "Report code", "cbc")
            page.get_by_label("Status").select_option("preliminary")
            page.get_by_label("Effective date/time").fill("2026-11-20T07:40")
            page.locator("#results-table input[type=checkbox]").first.check()
            _pick(page, "Performer", "lop")
            page.get_by_label("Conclusion", exact=True).fill(
                f"Mild normocytic anaemia. {phrase}. Repeat the count in four weeks."
            )
            expect(page.locator("#autosave-status")).to_contain_text(
                "saved automatically", timeout=15_000
            )
            expect(page.locator("#preview-ready")).to_be_visible(timeout=15_000)
            keep()
            page.get_by_role("link", name="Review and sign…").click()
            page.wait_for_load_state("load")
            keep()
            page.get_by_label("Your password").fill(PASSWORD)
            page.get_by_role("button", name="Sign and release").click()
            page.wait_for_load_state("load")
            keep()
            release_url = page.url
            after_signing()
            page.goto(release_url)
            expect(page.locator("#report-state")).to_have_text("Released", timeout=15_000)
            keep()
            report_path = release_url.removeprefix(base).removesuffix("release/")
            for path in (
                f"{report_path}history/",
                "/reports/",
                "/reports/signed/",
                "/notifications/",
                f"{report_path}payload.json",
            ):
                page.goto(base + path)
                keep()
            # The chart, reached as a clinician does: from the patient search.
            page.goto(f"{base}/patients/")
            search = page.get_by_label("Name", exact=True)
            search.fill(surname)
            search.press("Enter")
            page.locator("#patient-table a").first.click()
            page.wait_for_load_state("load")
            keep()
            for origin_page in (page,):
                self.storage.append(
                    origin_page.evaluate(
                        "() => JSON.stringify({local: {...localStorage},"
                        " session: {...sessionStorage}})"
                    )
                )
            self.cookies = [json.dumps(cookie) for cookie in context.cookies()]
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_load_state("load")
            keep()
            browser.close()


def _pick(page: Any, combobox: str, text: str) -> None:
    from playwright.sync_api import expect

    box = page.get_by_role("combobox", name=combobox)
    box.focus()
    box.press_sequentially(text, delay=20)
    expect(
        page.locator(f"#{box.get_attribute('aria-controls')} [role=option]").first
    ).to_be_visible(timeout=10_000)
    box.press("ArrowDown")
    box.press("Enter")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stops the servers this run started (each in its own process group), newest first."""
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def cookie_values(cookies: list[str]) -> list[str]:
    values = [str(json.loads(cookie).get("value", "")) for cookie in cookies]
    return [value for value in values if len(value) >= 16]


def count(haystacks: list[str], needle: str) -> int:
    return sum(1 for text in haystacks if needle in text)


def main() -> None:
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="clinikui-security-canary-"))
    alphabet = string.ascii_letters + string.digits
    key = "clk_test_CANARY" + "".join(secrets.choice(alphabet) for _ in range(24))
    surname = "Zzcanary" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    phrase = "CANARYPHRASE" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))
    sandbox_port, web_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    base = f"http://127.0.0.1:{web_port}"
    env = {
        **os.environ,
        "CLINIKUI_ENVIRONMENT": "test",
        "DJANGO_SETTINGS_MODULE": "security_canary_settings",
        "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]),
        "DATABASE_URL": f"sqlite:///{scratch / 'canary.sqlite3'}",
        "CLINIKAPI_BASE_URL": sandbox_url,
        "CLINIKAPI_SECRET_KEY": key,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "false",
        "LOG_LEVEL": "DEBUG",
    }
    logs = {name: scratch / f"{name}.log" for name in ("sandbox", "server", "worker", "setup")}
    processes: list[subprocess.Popen[bytes]] = []

    def manage(*args: str, log: str = "setup") -> str:
        done = subprocess.run(
            [str(PYTHON), "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        with logs[log].open("a") as out:
            out.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-1500:]}")
        return done.stdout

    def start(command: list[str], log: str) -> subprocess.Popen[bytes]:
        out = logs[log].open("ab")
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        processes.append(process)
        return process

    try:
        manage("migrate", "--noinput")
        manage("create_demo_users")
        manage("load_starter_terminology")
        sandbox = start(
            [
                str(PYTHON),
                "manage.py",
                "sandbox_api",
                "--port",
                str(sandbox_port),
                "--key",
                key,
                "--rate-limit",
                "1000",
            ],
            "sandbox",
        )
        wait_for(sandbox_url + "/health", process=sandbox)
        planted = plant_canary(sandbox_url, key, surname)
        server = start(
            [
                str(GUNICORN),
                "clinikui.wsgi",
                "--bind",
                f"127.0.0.1:{web_port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--log-level",
                "debug",
                "--access-logfile",
                "-",
                "--error-logfile",
                "-",
            ],
            "server",
        )
        wait_for(base + "/ping/", process=server)

        def release() -> None:
            manage("release_worker", "--once", log="worker")

        session = Session(base)
        session.run(surname=surname, phrase=phrase, after_signing=release)
        # Read back (a GET of the released report) may be due a moment after the send.
        release()
    except BaseException:
        stop(processes)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        stop(processes)

    try:
        # GlobalPermission is an unmanaged model without a table (it only carries permissions).
        dumpdata = manage("dumpdata", "--indent", "1", "--exclude", "reports.globalpermission")
        connection = sqlite3.connect(scratch / "canary.sqlite3")
        sql_dump = "\n".join(connection.iterdump())
        audit_details = [
            json.dumps(row)
            for row in connection.execute("SELECT * FROM reports_auditevent").fetchall()
        ]
        released = connection.execute(
            "SELECT state, remote_id FROM reports_report WHERE patient_id = ?",
            (planted["patient"],),
        ).fetchall()
        connection.close()
        server_log = logs["server"].read_text(errors="replace")
        worker_log = logs["worker"].read_text(errors="replace")
        pages = [body for _, body in session.bodies]
        key_sinks: dict[str, list[str]] = {
            "server log": [server_log],
            "worker log": [worker_log],
            "pages (HTML, htmx and JSON responses)": pages,
            "browser URLs": session.urls,
            "browser request headers": session.headers,
            "cookies": session.cookies,
            "localStorage/sessionStorage": session.storage,
            "database (dumpdata)": [dumpdata],
            "database (SQLite .dump)": [sql_dump],
        }
        phi_sinks: dict[str, list[str]] = {
            "server log": [server_log],
            "worker log": [worker_log],
            "browser URLs": session.urls,
            "cookies": session.cookies,
            "localStorage/sessionStorage": session.storage,
            "audit trail details": audit_details,
        }
        result = {
            "key_prefix": key[:15] + "…",
            "surname": surname,
            "released": released,
            "requests_seen": len(session.urls),
            "pages_kept": len(pages),
            "log_lines": {
                "server": server_log.count("\n"),
                "worker": worker_log.count("\n"),
            },
            "key_leaks": {name: count(texts, key) for name, texts in key_sinks.items()},
            "key_shaped": {
                name: sum(len(KEY_SHAPE.findall(text.replace(REDACTED, ""))) for text in texts)
                for name, texts in key_sinks.items()
            },
            "redacted_in_logs": server_log.count(REDACTED) + worker_log.count(REDACTED),
            # The session and CSRF cookies are secrets too: their values must not be logged.
            "cookie_values_in_logs": sum(
                (server_log + worker_log).count(value) for value in cookie_values(session.cookies)
            ),
            "surname_leaks": {name: count(texts, surname) for name, texts in phi_sinks.items()},
            "phrase_leaks": {name: count(texts, phrase) for name, texts in phi_sinks.items()},
            "legitimate": {
                "pages showing the surname": count(pages, surname),
                "pages showing the phrase": count(pages, phrase),
                "surname in the database dump": surname in dumpdata,
            },
            "seconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
