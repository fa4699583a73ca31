"""The Django admin, for operations only: reading the outbox, alerts and signatures.

Nothing clinical is edited here (DESIGN "Roles"): every model is read-only in the admin, and the
one operational action, resolving an alert, records who did it in the audit trail.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from reports import audit
from reports.models import Alert, Signature, Submission, SubmissionAttempt


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not subscriptable at run time
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    model = SubmissionAttempt
    readonly_fields = [
        "action",
        "worker",
        "started_at",
        "ended_at",
        "outcome",
        "http_status",
        "request_id",
    ]
    fields = tuple(readonly_fields)
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Submission)
class SubmissionAdmin(ReadOnlyAdmin):
    list_display = ["pk", "report", "operation", "state", "attempts", "remote_id", "created_at"]
    list_filter = ["state", "operation"]
    search_fields = ["remote_id", "request_id"]
    exclude = ["pdf", "payload"]
    inlines = [AttemptInline]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "message", "resolved_at"]
    list_filter = ["kind", "resolved_at"]
    actions = ["resolve"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_staff)  # the resolve action only; fields stay read-only

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["kind", "message", "submission", "created_at", "resolved_at"]

    @admin.action(description="Mark as resolved")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        with transaction.atomic():
            for alert in queryset.filter(resolved_at=None):
                alert.resolved_at = timezone.now()
                alert.save(update_fields=["resolved_at"])
                audit.record("alert.resolved", actor=request.user, alert=alert.pk, kind=alert.kind)  # type: ignore[arg-type]


@admin.register(Signature)
class SignatureAdmin(ReadOnlyAdmin):
    list_display = ["report", "version", "printed_name", "meaning", "signed_at"]
    list_filter = ["meaning"]
