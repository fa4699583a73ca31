"""`check --deploy` is clean under production settings, and ClinikUI's own deployment checks
catch what Django's miss: a weakened CSP, longer sessions, plain cookie names, a missing
middleware, ClinikAPI over plain HTTP."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.utils.csp import CSP

from reports.checks import check_security_settings

ROOT = Path(__file__).resolve().parent.parent


def test_check_deploy_is_clean_under_production_settings():
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "CLINIKUI_ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "clinikui.example.org",
        "DATABASE_URL": "postgres://clinikui:secret@127.0.0.1:5432/clinikui",
        "CLINIKAPI_SECRET_KEY": "clk_live_0123456789",
        "STATIC_ROOT": "/tmp/clinikui-static",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identified no issues" in result.stdout


def _ids() -> set[str]:
    return {message.id or "" for message in check_security_settings(None)}


@pytest.fixture
def production_like(settings):
    settings.SESSION_COOKIE_NAME = "__Host-sessionid"
    settings.CSRF_COOKIE_NAME = "__Host-csrftoken"
    settings.CLINIKAPI_BASE_URL = "https://api.clinikapi.com"
    assert _ids() == set()
    return settings


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: setattr(s, "SECURE_CSP", {**s.SECURE_CSP, "object-src": [CSP.SELF]}), "W002"),
        (
            lambda s: setattr(
                s, "SECURE_CSP", {**s.SECURE_CSP, "script-src": [CSP.SELF, CSP.UNSAFE_INLINE]}
            ),
            "W003",
        ),
        (lambda s: setattr(s, "SESSION_COOKIE_AGE", 60 * 60), "W004"),
        (lambda s: setattr(s, "CLINIKUI_SESSION_MAX_AGE", 24 * 60 * 60), "W005"),
        (lambda s: setattr(s, "SESSION_COOKIE_NAME", "sessionid"), "W006"),
        (lambda s: setattr(s, "CLINIKAPI_BASE_URL", "http://api.clinikapi.com"), "W007"),
        (
            lambda s: setattr(
                s,
                "MIDDLEWARE",
                [
                    m
                    for m in s.MIDDLEWARE
                    if m != "reports.middleware.SessionAbsoluteLimitMiddleware"
                ],
            ),
            "W001",
        ),
    ],
)
def test_each_weakening_is_reported(production_like, change, expected):
    change(production_like)
    assert _ids() == {f"clinikui.{expected}"}


def test_the_product_settings_pass_the_csp_and_session_checks():
    # Whatever the environment, the policy and the limits themselves are the strict ones.
    messages = check_security_settings(None)
    assert not [m for m in messages if m.id in {f"clinikui.W00{n}" for n in (1, 2, 3, 4, 5)}]
    assert settings.SECURE_CSP["frame-ancestors"] == [CSP.NONE]


@pytest.mark.django_db
def test_a_refused_form_is_audited_and_explained(clinician):
    from django.test import Client
    from django.urls import reverse

    from reports.models import AuditEvent

    client = Client(enforce_csrf_checks=True)
    client.force_login(clinician)
    response = client.post(reverse("reports:notifications"), {"x": "1"})
    assert response.status_code == 403
    assert "could not be accepted" in response.content.decode()
    event = AuditEvent.objects.get(action="security.csrf_refused")
    assert event.actor == clinician
    assert event.details["path"] == reverse("reports:notifications")
    assert event.details["reason"].startswith("CSRF cookie not set")
