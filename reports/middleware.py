"""Request handling shared by every view."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django_htmx.http import trigger_client_event

from reports import audit


class SessionAwareLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's LoginRequiredMiddleware, except that an htmx request from a page whose session
    has ended gets 401 and a `session-expired` event instead of the login page.

    A redirect would be followed silently by the browser and an autosave would vanish; the 401
    lets the page keep what was typed, offer to sign in again in place and then save it
    (RELIABILITY SES-03).
    """

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        needs_login = getattr(view_func, "login_required", True)
        if needs_login and request.headers.get("HX-Request") and not request.user.is_authenticated:
            return trigger_client_event(HttpResponse(status=401), "session-expired")
        return super().process_view(request, view_func, view_args, view_kwargs)


TIME_ZONE_COOKIE = "clinikui_tz"


class UserTimeZoneMiddleware:
    """Dates are entered and shown in the clinician's own time zone, as the browser reports it
    (static/js/timezone.js sets the cookie); anything but a known IANA zone name is ignored and
    the server's TIME_ZONE applies. What is stored and sent is always UTC."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        zone = unquote(request.COOKIES.get(TIME_ZONE_COOKIE, ""))  # the script percent-encodes
        if is_known_time_zone(zone):
            timezone.activate(zoneinfo.ZoneInfo(zone))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_known_time_zone(name: str) -> bool:
    """An IANA zone name this server has data for (never a file path or a made-up name)."""
    return name in _known_zones()


# An active session's idle expiry is pushed back at most this often. A session therefore ends
# between SESSION_COOKIE_AGE − SESSION_REFRESH_SECONDS and SESSION_COOKIE_AGE after its last
# request: 14–15 minutes, within RELIABILITY SES-01's 15 minutes ± 60 s.
SESSION_REFRESH_SECONDS = 60
SESSION_REFRESHED_KEY = "_refreshed_at"


class SessionRefreshMiddleware:
    """Slides the session's idle expiry forward, at most once a minute.

    Saving the session on every request (SESSION_SAVE_EVERY_REQUEST) made every page view a
    database write and, on SQLite, a commit; this writes once a minute per active session. Only
    requests that read the session count as activity (every signed-in page, htmx request and
    autosave does; /ping/ and static files do not), and an ended or signed-out session is left
    alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        session = request.session
        if not session.accessed or session.is_empty():
            return response
        now = int(timezone.now().timestamp())
        refreshed_at = session.get(SESSION_REFRESHED_KEY)
        is_due = not isinstance(refreshed_at, int) or now - refreshed_at >= SESSION_REFRESH_SECONDS
        if session.modified or is_due:
            # Any save sets a new expiry (SessionMiddleware, after this); record when it happened.
            session[SESSION_REFRESHED_KEY] = now
        return response


# When the session's user signed in, in seconds since the epoch by the server's clock; written at
# every sign-in (reports.signals) and never taken from anything the browser sends.
SESSION_SIGNED_IN_KEY = "_signed_in_at"


def signed_in_now() -> int:
    """The value SESSION_SIGNED_IN_KEY gets at a sign-in."""
    return int(timezone.now().timestamp())


class SessionAbsoluteLimitMiddleware:
    """Ends a signed-in session CLINIKUI_SESSION_MAX_AGE (12 hours) after its sign-in, however
    active it was (RELIABILITY SES-01); the idle limit is SESSION_COOKIE_AGE's.

    It runs before SessionAwareLoginRequiredMiddleware and leaves the request signed out, so an
    ended session is answered like an idle one: a page redirects to the sign-in page, an htmx
    request gets 401 and the page signs in again in place. Views open to everyone (the sign-in
    page, /ping/) are not checked, so /ping/ still reads no session. A signed-in session without
    a sign-in time cannot show its age and is ended too. The end is audited as
    `auth.session_expired`, in the transaction that deletes the session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> None:
        if not getattr(view_func, "login_required", True):
            return
        user = request.user
        if not user.is_authenticated:
            return
        signed_in_at = request.session.get(SESSION_SIGNED_IN_KEY)
        max_age = settings.CLINIKUI_SESSION_MAX_AGE
        if isinstance(signed_in_at, int) and signed_in_now() - signed_in_at <= max_age:
            return
        with transaction.atomic():
            audit.record(
                "auth.session_expired",
                actor=user,
                ip=str(request.META.get("REMOTE_ADDR", "")),
                reason="absolute limit",
            )
            request.session.flush()
        request.user = AnonymousUser()
