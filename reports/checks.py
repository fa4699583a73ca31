"""Deployment checks Django's own `check --deploy` does not make (RELIABILITY SEC-, SES-, WEB-).

Run with `python manage.py check --deploy --fail-level WARNING`; each finding names the setting
to change. Django checks HSTS, secure cookies, SSL redirect and DEBUG; these add what ClinikUI
promises on top: a strict Content Security Policy, the session limits, `__Host-` cookie names,
the login throttle, and that ClinikAPI is only ever reached over HTTPS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.utils.csp import CSP

_MIDDLEWARE = (
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "reports.middleware.SessionRefreshMiddleware",
    "reports.middleware.SessionAbsoluteLimitMiddleware",
    "axes.middleware.AxesMiddleware",
)
_CSP_NONE = ("object-src", "base-uri", "frame-ancestors")
IDLE_LIMIT = 15 * 60
ABSOLUTE_LIMIT = 12 * 60 * 60


@register(Tags.security, deploy=True)
def check_security_settings(app_configs: Sequence[Any] | None, **kwargs: Any) -> list[CheckMessage]:
    return [
        *_middleware(),
        *_content_security_policy(),
        *_sessions(),
        *_cookie_names(),
        *_api_base_url(),
    ]


def _middleware() -> list[CheckMessage]:
    return [
        Warning(f"{name} is not in MIDDLEWARE.", id="clinikui.W001")
        for name in _MIDDLEWARE
        if name not in settings.MIDDLEWARE
    ]


def _content_security_policy() -> list[CheckMessage]:
    policy: dict[str, list[str]] = getattr(settings, "SECURE_CSP", {}) or {}
    problems: list[CheckMessage] = []
    for directive in _CSP_NONE:
        if policy.get(directive) != [CSP.NONE]:
            problems.append(
                Warning(f"SECURE_CSP must set {directive} to 'none'.", id="clinikui.W002")
            )
    for directive in ("default-src", "script-src", "style-src"):
        sources = policy.get(directive) or policy.get("default-src") or []
        if not sources or any("unsafe" in source or source == "*" for source in sources):
            problems.append(
                Warning(
                    f"SECURE_CSP {directive} must be set and allow no 'unsafe-…' or '*' source.",
                    id="clinikui.W003",
                )
            )
    return problems


def _sessions() -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if settings.SESSION_COOKIE_AGE > IDLE_LIMIT:
        problems.append(
            Warning(
                f"SESSION_COOKIE_AGE is {settings.SESSION_COOKIE_AGE} s; sessions must end "
                f"after {IDLE_LIMIT // 60} minutes idle.",
                id="clinikui.W004",
            )
        )
    if settings.CLINIKUI_SESSION_MAX_AGE > ABSOLUTE_LIMIT:
        problems.append(
            Warning(
                f"CLINIKUI_SESSION_MAX_AGE is {settings.CLINIKUI_SESSION_MAX_AGE} s; sessions "
                f"must end {ABSOLUTE_LIMIT // 3600} hours after sign-in.",
                id="clinikui.W005",
            )
        )
    return problems


def _cookie_names() -> list[CheckMessage]:
    return [
        Warning(
            f"{setting} should start with __Host- (the browser then refuses it from any other "
            "host or path, and over plain HTTP).",
            id="clinikui.W006",
        )
        for setting in ("SESSION_COOKIE_NAME", "CSRF_COOKIE_NAME")
        if not str(getattr(settings, setting)).startswith("__Host-")
    ]


def _api_base_url() -> list[CheckMessage]:
    if urlsplit(settings.CLINIKAPI_BASE_URL).scheme == "https":
        return []
    return [
        Warning(
            f"CLINIKAPI_BASE_URL is {settings.CLINIKAPI_BASE_URL!r}; in production ClinikAPI "
            "is reached over https only (the API key travels in every request).",
            id="clinikui.W007",
        )
    ]
