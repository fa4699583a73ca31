"""Security events into the audit trail (RELIABILITY AU-05): sign-ins, failures, sign-outs and
lockouts (lockouts also alert the administrators, AC-05); and the sign-in time the 12-hour
session limit counts from (SES-01).

Signals are the only hook Django's authentication offers for these; no business flow runs here.
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from reports import audit, outbox
from reports.middleware import SESSION_SIGNED_IN_KEY, signed_in_now


def _client_ip(request: HttpRequest | None) -> str:
    return str(request.META.get("REMOTE_ADDR", "")) if request is not None else ""


@receiver(user_logged_in)
def record_sign_in(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    with transaction.atomic():
        audit.record("auth.signed_in", actor=user, ip=_client_ip(request))


@receiver(user_logged_in)
def remember_sign_in_time(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    # After login() has rotated the session, so every sign-in starts a new 12 hours.
    request.session[SESSION_SIGNED_IN_KEY] = signed_in_now()


@receiver(user_logged_out)
def record_sign_out(sender: Any, request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    with transaction.atomic():
        audit.record("auth.signed_out", actor=user, ip=_client_ip(request))


@receiver(user_login_failed)
def record_failed_sign_in(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # The username tried is kept (it says whom an attack aimed at); the password never is.
    with transaction.atomic():
        audit.record(
            "auth.sign_in_failed",
            actor=None,
            username=str(credentials.get("username", ""))[:150],
            ip=_client_ip(request),
        )


@receiver(user_locked_out)
def record_lockout(
    sender: Any, request: HttpRequest, username: str, ip_address: str, **kwargs: Any
) -> None:
    """A username locked after too many wrong passwords: audited, and the administrators
    alerted at once (row, ERROR log, mail), so an attack on an account is seen while it runs.

    django-axes sends this signal again for every attempt refused while the lock lasts; only the
    failure that locks is recorded. That is the one on which axes has just counted the failures
    (`axes_failures_since_start`, None on a request it refused unread)."""
    if getattr(request, "axes_failures_since_start", None) is None:
        return
    with transaction.atomic():
        event = audit.record(
            "auth.locked_out", actor=None, username=str(username or "")[:150], ip=ip_address or ""
        )
    # The alert is logged and mailed, so it names the audit event, not the username or address
    # (logs carry ids only, RELIABILITY SEC-02; axes masks both in its own lines too).
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    outbox.raise_alert(
        "auth.locked_out",
        f"An account was locked for {minutes} minutes after {settings.AXES_FAILURE_LIMIT} wrong "
        f"passwords; audit event {event.seq} names it and the address. The lock lifts on its "
        "own; `manage.py axes_reset_username` lifts it sooner (docs/operations.md).",
    )
