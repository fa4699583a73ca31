"""Request handling shared by every view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
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
