"""ClinikUI's own data."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import models
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Now
from django.urls import reverse


class GlobalPermission(models.Model):
    """Holds the product's permissions that belong to no single table.

    There is no table behind it (`managed = False`); it exists so that the permissions below get
    rows in `auth_permission` and can be granted to the Clinician and Supervisor groups
    (see `reports/roles.py`).
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("lookup_patients", "Can look up patients, encounters and results in ClinikAPI"),
            ("compose_report", "Can compose reports and sign them as author"),
            ("verify_report", "Can review reports, verify them or return them to the author"),
        ]

    def __str__(self) -> str:
        return "ClinikUI permissions"


class ReportState(models.TextChoices):
    DRAFT = "draft", "Draft"


class ReportQuerySet(models.QuerySet["Report"]):
    def drafts(self) -> ReportQuerySet:
        return self.filter(state=ReportState.DRAFT)

    def for_author(self, user: AbstractBaseUser | AnonymousUser) -> ReportQuerySet:
        return self.filter(author_id=user.pk)

    def with_head_content(self) -> ReportQuerySet:
        """Adds `head_content`, the current version's content, in the same query (no N+1)."""
        head = ReportVersion.objects.filter(report=OuterRef("pk"), number=OuterRef("head"))
        return self.annotate(
            head_content=Subquery(head.values("content")[:1], output_field=models.JSONField())
        )


class Report(models.Model):
    """One diagnostic report as ClinikUI keeps it; what it says lives in its versions."""

    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reports"
    )
    # The patient is chosen once, when the report is started, and never changes (ClinikAPI cannot
    # move a report to another patient either, CONTRACT §11.4). Name and birth date are kept for
    # the banner and the drafts list, so those pages need no API call.
    patient_id = models.CharField(max_length=128)
    patient_name = models.CharField(max_length=300)
    patient_birth_date = models.DateField(null=True, blank=True)
    state = models.CharField(max_length=20, choices=ReportState.choices, default=ReportState.DRAFT)
    # Number of the version the report now reads as; the optimistic-concurrency check compares
    # an editor's base version with it (RELIABILITY CON-01).
    head = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    objects = ReportQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [
            models.Index(fields=["author", "state", "-updated_at"], name="report_drafts_idx")
        ]

    def __str__(self) -> str:
        return f"Report {self.pk} for {self.patient_name}"

    def get_absolute_url(self) -> str:
        return reverse("reports:edit", args=[self.pk])

    @property
    def is_editable(self) -> bool:
        return self.state == ReportState.DRAFT


class VersionKind(models.TextChoices):
    STARTED = "started", "Started"
    SAVED = "saved", "Saved"
    AUTOSAVED = "autosaved", "Autosaved"
    RESTORED = "restored", "Restored"
    CONFLICT = "conflict", "Kept from a conflicting edit"


class ReportVersion(models.Model):
    """One immutable state of a report's content; every save adds one, nothing is overwritten."""

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=VersionKind.choices)
    content = models.JSONField()
    # The version the editor's text was based on; for a conflict copy, the stale one.
    based_on = models.PositiveIntegerField(null=True, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["report", "number"]
        constraints = [
            models.UniqueConstraint(fields=["report", "number"], name="unique_report_version"),
        ]

    def __str__(self) -> str:
        return f"Version {self.number} of report {self.report_id}"


class Attachment(models.Model):
    """A PDF attached to a report: exactly the bytes uploaded, checked and hashed.

    Kept in the database beside the versions that name it (by SHA-256), so a draft, its history
    and its files are saved, backed up and restored together; the size cap keeps each small.
    Rows are never changed: removing a file from a draft is a new version that no longer names it.
    """

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="attachments")
    sha256 = models.CharField(max_length=64)
    filename = models.CharField(max_length=255)
    size = models.PositiveIntegerField()
    page_count = models.PositiveIntegerField()
    content = models.BinaryField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["report", "sha256"], name="unique_report_attachment"),
        ]

    def __str__(self) -> str:
        return self.filename


class AuditHead(models.Model):
    """The newest link of the audit chain: one row, locked while an event is appended, so that
    events get consecutive numbers and each hashes its predecessor even under concurrency."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"Audit head at {self.seq}"


class AuditEvent(models.Model):
    """One state-changing or security action, append-only and hash-chained.

    Written in the same transaction as the change it records (RELIABILITY AU-01); the database
    refuses to update it (and, on PostgreSQL, to delete it) through triggers (AU-03); `hash` is
    SHA-256 of the previous hash and this row's canonical form (AU-04), checked by
    `manage.py verify_audit`. Details hold ids and kinds only, never patient data or free text.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    # Taken from the database clock inside the transaction, never from a client (AU-02).
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    action = models.CharField(max_length=64)
    report = models.ForeignKey(Report, on_delete=models.PROTECT, null=True, related_name="+")
    version = models.PositiveIntegerField(null=True)
    details = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.seq} {self.action}"
