from __future__ import annotations

from django.core.cache import cache
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from reports import outbox
from reports.models import Notification, Report, ReportState
from reports.roles import role_name, role_permissions

# The banner's figures are read at most this often per process: every page shows them, and a
# few seconds' delay in "N reports waiting" costs nothing (RELIABILITY OPS-02).
QUEUE_STATUS_SECONDS = 5


def user_role(request: HttpRequest) -> dict[str, object]:
    """The signed-in user's role for the navigation bar, and what their roles allow (`"compose_
    report" in role_perms`; Django's `perms` would let a superuser do clinical work), each
    looked up only if a page shows it."""
    return {
        "user_role": SimpleLazyObject(lambda: role_name(request.user)),
        "role_perms": SimpleLazyObject(lambda: role_permissions(request.user)),
    }


def release_queue(request: HttpRequest) -> dict[str, object]:
    """How many reports wait to be sent and why, read only if a page shows it."""

    def read() -> outbox.QueueStatus:
        status: outbox.QueueStatus | None = cache.get("release-queue-status")
        if status is None:
            status = outbox.queue_status()
            cache.set("release-queue-status", status, QUEUE_STATUS_SECONDS)
        return status

    return {"release_queue": SimpleLazyObject(read)}


def notifications(request: HttpRequest) -> dict[str, object]:
    """The navigation's counts: the user's unread notifications and, for supervisors, the
    reports waiting in the review queue (not their own). Read only if a page shows them."""

    def unread() -> int:
        return Notification.objects.filter(recipient_id=request.user.pk, read_at=None).count()

    def waiting() -> int:
        return (
            Report.objects.filter(state=ReportState.AWAITING_REVIEW)
            .exclude(author_id=request.user.pk)
            .count()
        )

    return {
        "unread_notifications": SimpleLazyObject(unread),
        "review_waiting": SimpleLazyObject(waiting),
    }
