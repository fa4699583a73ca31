"""Settings come from the environment; production never falls back to a default secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "CLINIKUI_ENVIRONMENT": "production",
    "SECRET_KEY": "a-production-secret-key-that-is-long-enough-for-django-checks-0123456789",
    "ALLOWED_HOSTS": "clinikui.example.org",
    "DATABASE_URL": "postgres://clinikui@db.example.org/clinikui",
    "CLINIKAPI_BASE_URL": "https://api.clinikapi.com",
    "CLINIKAPI_SECRET_KEY": "clk_live_productionkey",
}


def load_settings(
    env: dict[str, str], expression: str = "'loaded'"
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLINIK", "DJANGO"))}
    clean.pop("DATABASE_URL", None)
    clean.pop("SECRET_KEY", None)
    clean.pop("DEBUG", None)
    code = f"import clinikui.settings as s; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_load_when_every_secret_is_given():
    result = load_settings(
        PRODUCTION, "s.DEBUG, s.SESSION_COOKIE_NAME, s.DATABASES['default']['ENGINE']"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False __Host-sessionid django.db.backends.postgresql"


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CLINIKAPI_SECRET_KEY"]
)
def test_production_refuses_to_start_without_a_required_setting(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}

    result = load_settings(env)

    assert result.returncode != 0
    assert f"{missing} is required" in result.stderr


def test_the_environment_defaults_to_production():
    env = {k: v for k, v in PRODUCTION.items() if k != "CLINIKUI_ENVIRONMENT"}
    env.pop("SECRET_KEY")

    result = load_settings(env)

    assert "SECRET_KEY is required" in result.stderr


def test_production_refuses_debug_and_the_in_process_sandbox():
    debug = load_settings({**PRODUCTION, "DEBUG": "true"})
    sandbox = load_settings({**PRODUCTION, "CLINIKAPI_BASE_URL": "sandbox"})

    assert "DEBUG cannot be on in production" in debug.stderr
    assert "sandbox cannot be used in production" in sandbox.stderr


def test_demo_runs_on_sqlite_with_the_sandbox_and_debug_off():
    result = load_settings(
        {"CLINIKUI_ENVIRONMENT": "demo", "CLINIKAPI_BASE_URL": "sandbox"},
        "s.DEBUG, s.DATABASES['default']['ENGINE'], s.CLINIKAPI_SECRET_KEY.startswith('clk_test_')",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False django.db.backends.sqlite3 True"


@pytest.mark.parametrize(("name", "value"), [("DEBUG", "maybe"), ("CLINIKAPI_TIMEOUT", "soon")])
def test_bad_values_are_refused_with_the_variable_named(name, value):
    result = load_settings({"CLINIKUI_ENVIRONMENT": "development", name: value})

    assert result.returncode != 0
    assert name in result.stderr
