"""However active, a session ends 12 hours after its sign-in (RELIABILITY SES-01), and is
answered like an idle one (reports.middleware.SessionAbsoluteLimitMiddleware)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from reports.middleware import SESSION_SIGNED_IN_KEY
from reports.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

MAX_AGE = timedelta(seconds=settings.CLINIKUI_SESSION_MAX_AGE)


def page(client: Client, *, htmx: bool = False):
    return client.get(reverse("reports:drafts"), headers={"HX-Request": "true"} if htmx else {})


def age_session(client: Client, by: timedelta) -> None:
    """As if the session's sign-in had happened `by` earlier."""
    session = client.session
    session[SESSION_SIGNED_IN_KEY] -= int(by.total_seconds())
    session.save()


def test_the_limit_is_12_hours():
    assert timedelta(hours=12) == MAX_AGE


def test_signing_in_records_the_servers_time(client, clinician, clock):
    client.post(reverse("login"), {"username": "clinician", "password": PASSWORD})

    assert client.session[SESSION_SIGNED_IN_KEY] == int(clock.now.timestamp())


def test_a_session_used_all_day_works_until_12_hours_after_sign_in(signed_in, clock):
    statuses = []
    for _ in range(71):  # a request every 10 minutes for 11 h 50 min
        clock.advance(10 * 60)
        statuses.append(page(signed_in).status_code)
    clock.advance(10 * 60 - 1)
    last_second = page(signed_in)
    clock.advance(2)

    ended = page(signed_in)

    assert set(statuses) == {200}
    assert last_second.status_code == 200
    assert ended.status_code == 302 and ended["Location"].startswith(reverse("login"))


def test_a_page_of_a_session_older_than_12_hours_goes_to_sign_in(signed_in):
    assert page(signed_in).status_code == 200
    session_key = signed_in.session.session_key
    age_session(signed_in, MAX_AGE + timedelta(seconds=1))

    ended = page(signed_in)
    again = page(signed_in)

    assert ended.status_code == 302 and ended["Location"].startswith(reverse("login"))
    assert again.status_code == 302
    assert not Session.objects.filter(session_key=session_key).exists()


def test_an_htmx_request_of_a_session_older_than_12_hours_gets_401_and_signs_in_in_place(
    signed_in,
):
    age_session(signed_in, MAX_AGE + timedelta(seconds=1))

    response = page(signed_in, htmx=True)

    assert response.status_code == 401
    assert "session-expired" in response["HX-Trigger"]
    assert page(signed_in).status_code == 302


def test_the_end_is_audited_with_its_reason(signed_in, clinician):
    age_session(signed_in, MAX_AGE + timedelta(seconds=1))

    page(signed_in)

    event = AuditEvent.objects.get(action="auth.session_expired")
    assert event.actor == clinician
    assert event.details["reason"] == "absolute limit"
    assert not AuditEvent.objects.filter(action="auth.signed_out").exists()


def test_signing_in_again_starts_a_new_12_hours(signed_in, clock):
    age_session(signed_in, MAX_AGE + timedelta(seconds=1))
    page(signed_in)

    signed_in.post(reverse("login"), {"username": "clinician", "password": PASSWORD})
    clock.advance(60)

    assert page(signed_in).status_code == 200


def test_a_signed_in_session_without_a_sign_in_time_is_ended(signed_in):
    session = signed_in.session
    del session[SESSION_SIGNED_IN_KEY]
    session.save()

    assert page(signed_in).status_code == 302


def test_ping_does_not_read_the_session_even_when_it_is_too_old(signed_in):
    age_session(signed_in, MAX_AGE + timedelta(seconds=1))

    response = signed_in.get(reverse("ping"))

    assert response.status_code == 200
    assert Session.objects.filter(session_key=signed_in.session.session_key).exists()
