"""Request handling shared by every view."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django_htmx.http import trigger_client_event


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
        if zone in _known_zones():
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
