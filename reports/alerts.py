"""Alerts: what an administrator has to act on. Each is a row staff see in the admin, a line
logged at ERROR and a mail to the site's ADMINS.

A module of its own so that what raises alerts (the release worker, the sign-in signals) does
not have to load the other's machinery.
"""

from __future__ import annotations

import logging

from django.core.mail import mail_admins

from reports.models import Alert, Submission

logger = logging.getLogger(__name__)


def raise_alert(kind: str, message: str, *, submission: Submission | None = None) -> Alert:
    """Record an alert for administrators, log it at ERROR and mail the site's ADMINS."""
    alert = Alert.objects.create(kind=kind, message=message, submission=submission)
    logger.error("Alert %s: %s", kind, message)
    try:
        mail_admins(f"ClinikUI alert: {kind}", message)
    except Exception:  # mail being down must not stop the caller; the alert row and log remain
        logger.exception("Could not mail the administrators about alert %s", kind)
    return alert
