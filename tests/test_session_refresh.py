"""The 15-minute idle timeout (RELIABILITY SES-01) slides with activity, written at most once a
minute instead of on every request (reports.middleware.SessionRefreshMiddleware)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

pytestmark = pytest.mark.django_db

IDLE = timedelta(seconds=settings.SESSION_COOKIE_AGE)


def session_expiry(client: Client) -> datetime:
    return Session.objects.get(session_key=client.session.session_key).expire_date


def session_writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]


def page(client: Client) -> Any:
    return client.get(reverse("reports:drafts"))


def test_pages_within_a_minute_of_the_last_refresh_write_nothing(signed_in, clock):
    assert page(signed_in).status_code == 200
    expiry = session_expiry(signed_in)
    clock.advance(30)

    with CaptureQueriesContext(connection) as queries:
        response = page(signed_in)

    assert response.status_code == 200
    assert session_writes(queries) == []
    assert session_expiry(signed_in) == expiry


def test_activity_a_minute_later_pushes_the_expiry_to_15_minutes_from_now(signed_in, clock):
    page(signed_in)
    clock.advance(61)

    page(signed_in)

    assert session_expiry(signed_in) == clock.now + IDLE


def test_a_session_used_every_50_seconds_outlives_15_minutes(signed_in, clock):
    for _ in range(30):  # 25 minutes of steady work
        clock.advance(50)
        assert page(signed_in).status_code == 200

    assert session_expiry(signed_in) > clock.now + IDLE - timedelta(minutes=1)


def test_an_idle_session_ends_between_14_and_15_minutes_after_the_last_request(signed_in, clock):
    page(signed_in)  # refreshed now
    clock.advance(59)
    page(signed_in)  # the last request: too soon to refresh
    last_request = clock.now

    alive_at_14_min = Session.objects.filter(
        session_key=signed_in.session.session_key,
        expire_date__gt=last_request + IDLE - timedelta(minutes=1),
    ).exists()
    clock.advance(IDLE.total_seconds() + 1)
    ended = page(signed_in)

    assert alive_at_14_min
    assert ended.status_code == 302 and ended["Location"].startswith(reverse("login"))


def test_an_ended_session_asks_htmx_to_sign_in_again_and_is_not_revived(signed_in, clock):
    page(signed_in)
    clock.advance(IDLE.total_seconds() + 1)

    htmx = signed_in.get(reverse("reports:drafts"), headers={"HX-Request": "true"})
    clock.advance(1)
    again = page(signed_in)

    assert htmx.status_code == 401
    assert again.status_code == 302


def test_ping_is_not_activity_and_leaves_the_session_alone(signed_in, clock):
    page(signed_in)
    expiry = session_expiry(signed_in)
    clock.advance(120)

    with CaptureQueriesContext(connection) as queries:
        response = signed_in.get(reverse("ping"))

    assert response.status_code == 200
    assert queries.captured_queries == []
    assert session_expiry(signed_in) == expiry


def test_signing_out_is_not_undone_by_the_refresh(signed_in, clock):
    page(signed_in)
    clock.advance(120)

    signed_in.post(reverse("logout"))

    assert not Session.objects.exists()
    assert page(signed_in).status_code == 302
