"""Security events into the audit trail (RELIABILITY AU-05): sign-ins, failures, sign-outs and
lockouts (lockouts also alert the administrators, AC-05); and the sign-in time the 12-hour
session limit counts from (SES-01).

Signals are the only hook Django's authentication offers for these; no business flow runs here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models.functions import Now
from django.dispatch import receiver
from django.http import HttpRequest

from reports import audit
from reports.alerts import raise_alert
from reports.middleware import SESSION_SIGNED_IN_KEY, signed_in_now
from reports.models import Alert

LOCKOUT_ALERT = "auth.locked_out"


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
    if request is not None and getattr(request, "axes_locked_out", False):
        _record_lockout(str(credentials.get("username", ""))[:150], _client_ip(request))


def _record_lockout(username: str, ip: str) -> None:
    """The name tried is locked (RELIABILITY AC-05): audited once per lock, after the failure
    that locked it, and alerted to the administrators (row, ERROR log, mail).

    django-axes has marked the request locked by the time this runs, both on the failure that
    locks and on every attempt it refuses while the lock lasts; a lock lasts the cool-off time
    from its last counted failure, so one lockout event per name per cool-off is one per lock.
    Alerts are at most one per cool-off in all: names that are no account lock the same way,
    and five guesses must not buy a mail each. The audit trail lists every lockout."""
    cool_off = settings.AXES_COOLOFF_TIME
    with transaction.atomic():
        event = audit.record_once(
            "auth.locked_out",
            actor=None,
            within=cool_off,
            same="username",
            username=username,
            ip=ip,
        )
        if event is None:
            return
        if Alert.objects.filter(kind=LOCKOUT_ALERT, created_at__gte=Now() - cool_off).exists():
            return
        # Logged and mailed: it names the audit event, not the username or the address (logs
        # carry ids only, RELIABILITY SEC-02; axes masks both in its own lines too).
        minutes = int(cool_off.total_seconds() // 60)
        raise_alert(
            LOCKOUT_ALERT,
            f"A sign-in name was locked for {minutes} minutes after {settings.AXES_FAILURE_LIMIT} "
            f"wrong passwords; audit event {event.seq} names it and the address. Later lockouts "
            f"in the next {minutes} minutes are in the audit trail only (auth.locked_out). The "
            "lock lifts on its own; `manage.py axes_reset_username` lifts it sooner.",
        )
