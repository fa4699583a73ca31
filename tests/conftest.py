"""Shared fixtures: users in each role, the sandbox in-process and over a real socket, and the
suite-wide watch that the ClinikAPI key never reaches a page, a log record or an error report."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.cache import cache
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Browser, Page, sync_playwright

from reports import clinikapi
from reports.roles import CLINICIAN, SUPERVISOR, ensure_roles
from reports.sandbox import Sandbox, SandboxConfig, default_sandbox
from reports.sandbox.server import RunningSandbox, serve_in_thread

PASSWORD = "correct horse battery staple"
KEY_SHAPE = re.compile(r"clk_(?:live|test)_[A-Za-z0-9]+")


# --- the key-leak watch (RELIABILITY SEC-01, F15) -------------------------------------------


class _RecordEverything(logging.Handler):
    """Keeps every log record's final text, exception included, before any redaction."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append(text)


class _LeakWatch:
    def __init__(self) -> None:
        self.records = _RecordEverything()
        self.bodies: list[tuple[str, bytes]] = []

    def leaks(self, secret: str) -> list[str]:
        found = [
            f"log record: {text[:200]!r}"
            for text in self.records.texts
            if secret in text or KEY_SHAPE.search(text)
        ]
        for path, body in self.bodies:
            text = body.decode("utf-8", "replace")
            if secret in text or KEY_SHAPE.search(text):
                found.append(f"response body of {path}")
        for message in mail.outbox if hasattr(mail, "outbox") else []:
            if secret in str(message.message()):
                found.append(f"email {message.subject!r}")
        return found

    def clear(self) -> None:
        self.records.texts.clear()
        self.bodies.clear()


@pytest.fixture(scope="session")
def leak_watch() -> Iterator[_LeakWatch]:
    """Records every log record (all loggers at DEBUG) and every response Django serves."""
    watch = _LeakWatch()
    root = logging.getLogger()
    noisy = [logging.getLogger(name) for name in ("httpx", "httpcore", "django", "reports")]
    # Template lookups log every missing variable at DEBUG with the whole context: too noisy,
    # and the context never holds the key (settings reach templates only through views).
    quiet = logging.getLogger("django.template")
    saved_levels = [(logger, logger.level) for logger in [root, *noisy, quiet]]
    for logger in [root, *noisy]:
        logger.setLevel(logging.DEBUG)
    quiet.setLevel(logging.INFO)
    root.addHandler(watch.records)

    original_get_response = BaseHandler.get_response

    def get_response(self: BaseHandler, request: Any) -> HttpResponseBase:
        response = original_get_response(self, request)
        if isinstance(response, HttpResponse):
            watch.bodies.append((request.path, response.content))
        elif isinstance(response, StreamingHttpResponse):
            pass  # file downloads; their bytes are the clinician's own files
        return response

    BaseHandler.get_response = get_response  # type: ignore[method-assign]
    yield watch
    BaseHandler.get_response = original_get_response  # type: ignore[method-assign]
    root.removeHandler(watch.records)
    for logger, level in saved_levels:
        logger.setLevel(level)


@pytest.fixture(autouse=True)
def _no_api_key_leaks(leak_watch: _LeakWatch) -> Iterator[None]:
    """Fails the test during which the ClinikAPI key reached a log record, page or email."""
    leak_watch.clear()
    yield
    secret = settings.CLINIKAPI_SECRET_KEY
    leaks = leak_watch.leaks(secret) if secret else []
    leak_watch.clear()
    if leaks:
        pytest.fail("The ClinikAPI key leaked into: " + "; ".join(leaks[:5]), pytrace=False)


# --- speed and isolation ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_api_client() -> Iterator[None]:
    """Each test gets a client built from its own settings and a freshly seeded in-process
    sandbox, whose per-minute rate limit therefore counts this test's calls only."""
    default_sandbox().reset()
    clinikapi.reset_client()
    cache.clear()
    yield
    clinikapi.reset_client()


# --- users -----------------------------------------------------------------------------------


def make_user(username: str, role: str | None = None, **extra: Any) -> User:
    ensure_roles()
    user = User.objects.create_user(
        username=username,
        password=PASSWORD,
        first_name=extra.pop("first_name", username.capitalize()),
        last_name=extra.pop("last_name", "Tester"),
        **extra,
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def clinician(db: None) -> User:
    return make_user("clinician", CLINICIAN)


@pytest.fixture
def supervisor(db: None) -> User:
    return make_user("supervisor", SUPERVISOR)


@pytest.fixture
def admin_user(db: None) -> User:
    return make_user("admin", is_staff=True, is_superuser=True)


@pytest.fixture
def clinician_client(client: Client, clinician: User) -> Client:
    client.force_login(clinician)
    return client


# --- the clock -------------------------------------------------------------------------------


@dataclass
class Clock:
    now: datetime

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Django's clock, moved by hand (the session store and the middleware both read it)."""
    clock = Clock(datetime(2026, 11, 24, 7, 0, tzinfo=UTC))
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


@pytest.fixture
def signed_in(client: Client, clinician: User, clock: Clock) -> Client:
    client.force_login(clinician)
    return client


# --- the browser (Playwright driving the system Chromium) -----------------------------------


def chromium_path() -> str:
    path = os.environ.get("CLINIKUI_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed: run bin/test, which installs Debian's chromium.")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop in this thread; Django's ORM calls from the test
    # itself are still synchronous, so the async-safety guard would only get in the way.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


# --- the sandbox -----------------------------------------------------------------------------


@pytest.fixture
def live_sandbox() -> Iterator[RunningSandbox]:
    """A fresh sandbox served over a real socket on 127.0.0.1."""
    running = serve_in_thread(Sandbox(SandboxConfig()))
    yield running
    running.stop()


@pytest.fixture
def api_over_socket(settings: Any, live_sandbox: RunningSandbox) -> RunningSandbox:
    """Points ClinikUI's client at the socket sandbox, with short timeouts for fault tests."""
    settings.CLINIKAPI_BASE_URL = live_sandbox.url
    settings.CLINIKAPI_READ_TIMEOUT = 1.0
    settings.CLINIKAPI_TIMEOUT = 3.0
    clinikapi.reset_client()
    return live_sandbox
