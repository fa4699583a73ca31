"""The admin shows the outbox, alerts and signatures for operations; nothing clinical changes."""

from __future__ import annotations

import pytest
from django.urls import reverse

from reports import alerts
from reports.models import Alert, AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize("model", ["submission", "alert", "signature"])
def test_staff_read_the_release_tables_but_cannot_add_or_change(admin_client, model):
    assert admin_client.get(reverse(f"admin:reports_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:reports_{model}_add")).status_code == 403


def test_resolving_an_alert_is_audited(admin_client, admin_user):
    alert = Alert.objects.create(kind="transmission.quota", message="Quota used up.")
    response = admin_client.post(
        reverse("admin:reports_alert_changelist"),
        {"action": "resolve", "_selected_action": [alert.pk]},
    )
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    event = AuditEvent.objects.get(action="alert.resolved")
    assert event.actor == admin_user and event.details["alert"] == alert.pk


def test_an_alert_is_mailed_to_the_administrators(settings, mailoutbox):
    settings.ADMINS = ["lab-it@example.org"]
    alerts.raise_alert("transmission.quota", "ClinikAPI's quota is used up.")
    (message,) = mailoutbox
    assert message.to == ["lab-it@example.org"]
    assert "transmission.quota" in message.subject
    assert "quota is used up" in message.body
    assert Alert.objects.get().kind == "transmission.quota"
