"""Login throttling with django-axes (RELIABILITY AC-05, SIG-01): 5 wrong passwords lock a
username for 15 minutes, wrong signing passwords count the same, and the lock lifts on its own."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import User
from django.db.models import F
from django.test import Client
from django.urls import reverse

from reports import services
from reports.models import Alert, AuditEvent, Signature
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOCKED_OUT = "Too many failed sign-ins"


def sign_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def is_signed_in(client: Client, user: User) -> bool:
    return client.session.get(SESSION_KEY) == str(user.pk)


def fail_to_sign_in(client: Client, username: str, times: int) -> list[int]:
    return [sign_in(client, username, "not-the-password").status_code for _ in range(times)]


def move_attempts_back(by: timedelta) -> None:
    """As if the failures had happened `by` earlier (axes compares them with its own clock)."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - by)


def test_five_wrong_passwords_lock_the_account_even_against_the_right_password(client, clinician):
    statuses = fail_to_sign_in(client, "clinician", 5)

    right_password = sign_in(client, "clinician", PASSWORD)

    assert settings.AXES_FAILURE_LIMIT == 5
    assert statuses == [200, 200, 200, 200, 429]
    assert right_password.status_code == 429
    page = right_password.content.decode()
    assert LOCKED_OUT in page
    assert "Try again after 15 minutes" in page
    assert not is_signed_in(client, clinician)


def test_four_wrong_passwords_do_not_lock_and_a_success_starts_the_count_again(client, clinician):
    fail_to_sign_in(client, "clinician", 4)
    assert sign_in(client, "clinician", PASSWORD).status_code == 302
    client.post(reverse("logout"))

    statuses = fail_to_sign_in(client, "clinician", 4)

    assert statuses == [200] * 4
    assert sign_in(client, "clinician", PASSWORD).status_code == 302
    assert is_signed_in(client, clinician)


def test_another_user_on_the_same_computer_is_not_locked(client, clinician, supervisor):
    fail_to_sign_in(client, "clinician", 5)

    response = sign_in(client, "supervisor", PASSWORD)

    assert response.status_code == 302
    assert is_signed_in(client, supervisor)


def test_an_unknown_username_is_locked_the_same_way_so_nothing_says_who_exists(client):
    statuses = fail_to_sign_in(client, "nobody", 6)

    assert statuses == [200, 200, 200, 200, 429, 429]


def test_the_lock_lifts_15_minutes_after_the_last_failure(client, clinician):
    fail_to_sign_in(client, "clinician", 5)
    assert sign_in(client, "clinician", PASSWORD).status_code == 429  # does not extend the lock
    move_attempts_back(timedelta(minutes=14))
    still_locked = sign_in(client, "clinician", PASSWORD)
    move_attempts_back(timedelta(minutes=1, seconds=1))

    response = sign_in(client, "clinician", PASSWORD)

    assert still_locked.status_code == 429
    assert response.status_code == 302
    assert is_signed_in(client, clinician)


def test_attempts_while_locked_out_are_audited_as_failed_sign_ins(client, clinician):
    fail_to_sign_in(client, "clinician", 5)

    sign_in(client, "clinician", PASSWORD)

    failures = AuditEvent.objects.filter(action="auth.sign_in_failed")
    assert failures.count() == 6
    assert not AuditEvent.objects.filter(action="auth.signed_in").exists()


def test_a_lockout_is_audited_and_alerted_once_however_often_the_locked_name_is_tried(
    client, clinician, mailoutbox, settings
):
    settings.ADMINS = ["lab-it@example.org"]
    fail_to_sign_in(client, "clinician", 4)
    assert not Alert.objects.exists()

    fail_to_sign_in(client, "clinician", 1)  # the fifth failure locks
    alerted_at_once = Alert.objects.count()
    for _ in range(3):
        sign_in(client, "clinician", PASSWORD)  # refused while locked
    fail_to_sign_in(Client(), "clinician", 2)

    assert alerted_at_once == 1
    (lockout,) = AuditEvent.objects.filter(action="auth.locked_out")
    assert lockout.details == {"username": "clinician", "ip": "127.0.0.1"}
    # After the failure that locked, in the trail's order.
    before = AuditEvent.objects.get(seq=lockout.seq - 1)
    assert (before.action, before.details["username"]) == ("auth.sign_in_failed", "clinician")
    alert = Alert.objects.get()
    assert alert.kind == "auth.locked_out"
    assert f"audit event {lockout.seq} names it" in alert.message
    assert "15 minutes" in alert.message
    # Logged and mailed: ids only, never the name tried, the address or a password.
    for secret in ("clinician", "127.0.0.1", PASSWORD):
        assert secret not in alert.message
    assert [mail.subject for mail in mailoutbox] == ["[Django] ClinikUI alert: auth.locked_out"]


def test_lockouts_of_made_up_names_are_each_audited_but_alerted_once(client, mailoutbox, settings):
    settings.ADMINS = ["lab-it@example.org"]
    for name in ("no-such-user-1", "no-such-user-2", "no-such-user-3"):
        fail_to_sign_in(client, name, 5)

    lockouts = AuditEvent.objects.filter(action="auth.locked_out")
    assert [event.details["username"] for event in lockouts] == [
        "no-such-user-1",
        "no-such-user-2",
        "no-such-user-3",
    ]
    assert Alert.objects.filter(kind="auth.locked_out").count() == 1
    assert len(mailoutbox) == 1


def test_a_name_locked_again_after_the_lock_lifted_is_audited_and_alerted_again(
    client, clinician, settings
):
    # Real time, briefly: the audit trail's times come from the database clock and never change.
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    fail_to_sign_in(client, "clinician", 5)
    time.sleep(1.2)

    statuses = fail_to_sign_in(client, "clinician", 5)

    assert statuses[-1] == 429  # locked again
    assert AuditEvent.objects.filter(action="auth.locked_out").count() == 2
    assert Alert.objects.filter(kind="auth.locked_out").count() == 2


def test_wrong_signing_passwords_count_towards_the_same_lockout(clinician_client, clinician):
    report = services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)
    sign_url = reverse("reports:sign", args=[report.pk])

    def sign(password: str):
        data = {"password": password, "version": report.head, "token": str(uuid.uuid4())}
        return clinician_client.post(sign_url, data)

    statuses = [sign("not-my-password").status_code for _ in range(5)]
    signing_with_the_right_password = sign(PASSWORD)
    signing_in_elsewhere = sign_in(Client(), "clinician", PASSWORD)

    assert statuses == [422, 422, 422, 422, 429]
    assert signing_with_the_right_password.status_code == 429
    assert LOCKED_OUT in signing_with_the_right_password.content.decode()
    assert not Signature.objects.exists()
    assert signing_in_elsewhere.status_code == 429
