"""Simulated clinicians for `bench/load.py` (Locust, headless; not meant to be run on its own).

Each simulated clinician signs in through the login form with an account of its own, then over
and over: opens the drafts list, starts a report for a seeded patient, opens the composer, fills
the fields a signable report needs and autosaves its conclusion several times (each autosave
posts the whole form with a growing text and the `base_version` the previous one returned, as
htmx does), opens the preview (`payload.json`), sometimes signs (password again; `preliminary`,
so it is released without review) and opens the history page. One step per task call, with the
think time of a person (1–5 s) between steps; `--stop-timeout` lets a step in flight finish, so
no request is cut off when the run ends.

Configured by environment variables set by `bench/load.py`:

    LOAD_HOSTS        comma-separated base URLs; users are spread over them in turn
    LOAD_USERNAMES    comma-separated accounts, one per simulated clinician
    LOAD_PASSWORD     their password
    LOAD_PATIENT_ID   the seeded patient the reports are for
    LOAD_SIGN_SHARE   share of reports signed (0–1)
    LOAD_RESULTS      where to write the samples and autosave records (JSON) at the end

The servers run as production does, behind TLS that is not there on loopback: every request
says `X-Forwarded-Proto: https` (what the TLS proxy would add), and the `Secure`, `__Host-`
cookies are sent back over plain HTTP to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.cookiejar import Cookie, DefaultCookiePolicy
from itertools import count
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task
from requests import Response

HOSTS = [h for h in os.environ.get("LOAD_HOSTS", "").split(",") if h]
USERNAMES = [u for u in os.environ.get("LOAD_USERNAMES", "").split(",") if u]
PASSWORD = os.environ.get("LOAD_PASSWORD", "")
PATIENT_ID = os.environ.get("LOAD_PATIENT_ID", "")
SIGN_SHARE = float(os.environ.get("LOAD_SIGN_SHARE", "0.35"))
RESULTS = os.environ.get("LOAD_RESULTS", "")

# What a signable report carries besides the conclusion (as tests/test_composer_browser.py fills).
REPORT_CODE = "58410-2"  # CBC panel - Blood by Automated count (starter terminology)
CONCLUSION_CODE = "271737000"  # Anemia (SNOMED CT, starter terminology)
EFFECTIVE = "2026-03-02T07:40"
SENTENCES = (
    "Mild normocytic anaemia.",
    "Haemoglobin 118 g/L, MCV 88 fL.",
    "White cells and platelets within the reference ranges.",
    "No blasts seen on the film.",
    "Suggest ferritin, B12 and folate.",
    "Repeat the full blood count in four weeks.",
    "Discussed with the requesting clinician.",
)

CSRF_HEADER = re.compile(r'hx-headers=\'\{"x-csrftoken": "([^"]+)"\}\'')
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
BASE_VERSION = re.compile(r'name="base_version" value="(\d+)"')
TIME_ZONE = re.compile(r'name="time_zone" value="([^"]*)"')
RESULT_IDS = re.compile(r'name="results" value="([^"]+)"')
SIGN_VERSION = re.compile(r'name="version" value="(\d+)"')
SIGN_TOKEN = re.compile(r'name="token" value="([^"]+)"')
REPORT_URL = re.compile(r"/reports/(\d+)/$")


@dataclass
class Sample:
    name: str
    at: float  # when the request started, seconds since the epoch
    ms: float
    error: str  # empty when the response was what a browser expects


@dataclass
class AutosaveRecord:
    """What one simulated clinician knows about one report it wrote."""

    report_id: int
    username: str
    last_saved: str = ""  # the last conclusion an autosave got a 200 for ("" when started)
    unacknowledged: list[str] = field(default_factory=list)  # sent after it, no 200 back
    autosaves_ok: int = 0
    signed: bool = False


# Production cookies are Secure (and __Host- prefixed); here loopback stands in for the TLS
# proxy, so they are sent back over plain HTTP. requests copies the session's cookies into a
# fresh jar for every request, so the policy is changed where every jar gets it.
def _loopback_stands_in_for_tls(
    policy: DefaultCookiePolicy, cookie: Cookie, request: urllib.request.Request
) -> bool:
    return True


DefaultCookiePolicy.return_ok_secure = _loopback_stands_in_for_tls  # type: ignore[method-assign,assignment]

SAMPLES: list[Sample] = []
RECORDS: list[AutosaveRecord] = []
_numbers = count()


def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: BaseException | None = None,
    **kwargs: Any,
) -> None:
    error = "" if exception is None else str(exception)[:200] or type(exception).__name__
    at = float(kwargs.get("start_time") or time.time())
    SAMPLES.append(Sample(name=name, at=at, ms=response_time, error=error))


def _on_test_stop(**kwargs: Any) -> None:
    if RESULTS:
        data = {
            "samples": [asdict(s) for s in SAMPLES],
            "reports": [asdict(r) for r in RECORDS],
        }
        Path(RESULTS).write_text(json.dumps(data))


events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_on_test_stop)  # type: ignore[no-untyped-call]


class StepFailed(Exception):
    """A response that a browser would not have continued from; the journey starts again."""


class Clinician(HttpUser):
    wait_time = between(1, 5)
    # Overwritten per user in on_start; Locust wants one at class level.
    host = HOSTS[0] if HOSTS else "http://127.0.0.1"

    def on_start(self) -> None:
        number = next(_numbers)
        if number >= len(USERNAMES):
            raise RuntimeError("more simulated clinicians than accounts")
        self.username = USERNAMES[number]
        self.client.base_url = HOSTS[number % len(HOSTS)]
        self.origin = "https://" + self.client.base_url.split("://", 1)[1]
        self.client.headers["X-Forwarded-Proto"] = "https"
        self.csrf_token = ""
        self.is_signed_in = False
        self.steps = self._session()

    @task
    def step(self) -> None:
        try:
            next(self.steps)
        except (StepFailed, StopIteration):
            # As a person would: back to the drafts list (or to signing in) and carry on.
            self.steps = self._journeys() if self.is_signed_in else self._session()

    # --- the simulated person ----------------------------------------------------------------

    def _session(self) -> Iterator[None]:
        page = self._get("/accounts/login/", "login page")
        token = _find(CSRF_FIELD, page, "login page CSRF field")
        yield
        self._post(
            "/accounts/login/",
            "sign in",
            {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            referer="/accounts/login/",
            expect=(302,),
        )
        self._get("/", "home (after sign-in)")
        self.is_signed_in = True
        yield
        yield from self._journeys()

    def _journeys(self) -> Iterator[None]:
        while True:
            yield from self._journey()

    def _journey(self) -> Iterator[None]:
        self._get("/reports/", "drafts list")
        yield
        started = self._post(
            "/reports/new/",
            "start report",
            {"patient_id": PATIENT_ID, "csrfmiddlewaretoken": self.csrf_token},
            referer="/reports/new/",
            expect=(302,),
        )
        match = REPORT_URL.search(started.headers.get("Location", ""))
        if match is None:
            raise StepFailed("start report did not lead to a composer")
        report_id = int(match[1])
        record = AutosaveRecord(report_id=report_id, username=self.username)
        RECORDS.append(record)
        composer_url = f"/reports/{report_id}/"
        page = self._get(composer_url, "composer")
        base_version = _find(BASE_VERSION, page, "base_version")
        time_zone = _find(TIME_ZONE, page, "time_zone")
        results = list(dict.fromkeys(RESULT_IDS.findall(page)))[:3]
        yield

        sentences = random.randint(3, len(SENTENCES))
        for typed in range(1, sentences + 1):
            text = f"{record.report_id}: " + " ".join(SENTENCES[:typed])
            form = {
                "csrfmiddlewaretoken": self.csrf_token,
                "base_version": base_version,
                "time_zone": time_zone,
                "encounter": "",
                "report_code": REPORT_CODE,
                "category": "LAB",
                "status": "preliminary",
                "effective": EFFECTIVE,
                "results": results,
                "performer": "",
                "results_interpreter": "",
                "conclusion": text,
                "conclusion_codes": [CONCLUSION_CODE],
                "autosave": "1",
            }
            record.unacknowledged.append(text)
            answer = self._post(
                composer_url,
                "autosave",
                form,
                referer=composer_url,
                htmx=True,
                expect=(200,),
            )
            base_version = _find(BASE_VERSION, answer.text, "autosave's base_version")
            record.last_saved, record.unacknowledged = text, []
            record.autosaves_ok += 1
            yield

        self._get(f"/reports/{report_id}/payload.json", "preview (payload.json)", is_html=False)
        yield
        if random.random() < SIGN_SHARE:
            sign_url = f"/reports/{report_id}/sign/"
            page = self._get(sign_url, "sign page")
            fields = {
                "csrfmiddlewaretoken": _find(CSRF_FIELD, page, "sign form CSRF field"),
                "version": _find(SIGN_VERSION, page, "sign form version"),
                "token": _find(SIGN_TOKEN, page, "sign form token"),
            }
            yield
            self._post(
                sign_url,
                "sign",
                {**fields, "password": PASSWORD},
                referer=sign_url,
                expect=(303,),
            )
            record.signed = True
            self._get(f"/reports/{report_id}/release/", "report page (after signing)")
            yield
        self._get(f"/reports/{report_id}/history/", "history")
        yield

    # --- requests as the browser makes them ----------------------------------------------------

    def _get(self, path: str, name: str, *, is_html: bool = True) -> str:
        with self.client.get(path, name=name, catch_response=True) as response:
            sent_to_login = path != "/accounts/login/" and "/accounts/login/" in response.url
            if response.status_code != 200 or sent_to_login:
                response.failure(f"{response.status_code} at {response.url}")
                raise StepFailed(name)
            response.success()
            text = str(response.text)
            if is_html:
                self._remember_csrf(text)
            return text

    def _post(
        self,
        path: str,
        name: str,
        data: dict[str, Any],
        *,
        referer: str,
        expect: tuple[int, ...],
        htmx: bool = False,
    ) -> Response:
        headers = {"Referer": self.origin + referer, "Origin": self.origin}
        if htmx:
            headers |= {
                "HX-Request": "true",
                "HX-Current-URL": self.origin + referer,
                "X-CSRFToken": self.csrf_token,
            }
        started = time.monotonic()
        with self.client.post(
            path,
            data=data,
            headers=headers,
            name=name,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code not in expect:
                response.failure(
                    f"{response.status_code} (want {expect}) after "
                    f"{time.monotonic() - started:.2f} s"
                )
                raise StepFailed(name)
            response.success()
            self._remember_csrf(response.text)
            answer: Response = response
            return answer

    def _remember_csrf(self, page: str) -> None:
        match = CSRF_HEADER.search(page)
        if match:
            self.csrf_token = match[1]


def _find(pattern: re.Pattern[str], text: str, what: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise StepFailed(f"no {what} in the page")
    return match[1]
