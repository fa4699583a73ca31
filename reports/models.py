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
    """Where a report is in its life (DESIGN "Report lifecycle"); `reports.workflow` moves it."""

    DRAFT = "draft", "Draft"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    RELEASING = "releasing", "Being released"
    RELEASED = "released", "Released"
    CANCELLED = "cancelled", "Cancelled"


class ReportQuerySet(models.QuerySet["Report"]):
    def drafts(self) -> ReportQuerySet:
        return self.filter(state=ReportState.DRAFT)

    def for_author(self, user: AbstractBaseUser | AnonymousUser) -> ReportQuerySet:
        return self.filter(author_id=user.pk)

    def with_last_outcomes(self) -> ReportQuerySet:
        """Adds `last_review_id` and `last_submission_state`, so that the composer reads its
        last review and ClinikAPI's refusal only for a report that has them, not for every
        draft on every load."""
        reviews = Review.objects.filter(report=OuterRef("pk")).order_by("-pk")
        submissions = Submission.objects.filter(report=OuterRef("pk")).order_by(
            "-created_at", "-pk"
        )
        return self.annotate(
            last_review_id=Subquery(reviews.values("pk")[:1]),
            last_submission_state=Subquery(submissions.values("state")[:1]),
        )

    def with_head_content(self) -> ReportQuerySet:
        """Adds `head_content`, the current version's content, in the same query (no N+1)."""
        # order_by(): a version's default ordering would join its report into the subquery.
        head = ReportVersion.objects.filter(
            report=OuterRef("pk"), number=OuterRef("head")
        ).order_by()
        return self.annotate(
            head_content=Subquery(head.values("content")[:1], output_field=models.JSONField())
        )

    def with_open_amendment(self) -> ReportQuerySet:
        """Adds `open_amendment_kind` and `amended_version` (the released version it starts
        from), each None without an open amendment, in the same query (no N+1)."""
        open_amendments = Amendment.objects.filter(
            report=OuterRef("pk"), released_at__isnull=True, discarded_at__isnull=True
        ).order_by()
        return self.annotate(
            open_amendment_kind=Subquery(open_amendments.values("kind")[:1]),
            amended_version=Subquery(open_amendments.values("released_version__number")[:1]),
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
    # ClinikAPI's id for the report, once a release has been confirmed (by a 201 or by
    # reconciliation); amendments PATCH it, never POST again (RELIABILITY REC-04).
    remote_id = models.CharField(max_length=128, blank=True)
    # Ids of the chosen results ClinikAPI flags critical (HH, LL, AA), as the composer last saw
    # them: the review queue shows them without asking ClinikAPI for every report it lists.
    critical_results = models.JSONField(default=list, blank=True)
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
    def number(self) -> str:
        """The report's local number as people read it and as the signed PDF's title carries it."""
        return f"R-{self.pk:06d}"

    @property
    def is_editable(self) -> bool:
        return self.state == ReportState.DRAFT


class VersionKind(models.TextChoices):
    STARTED = "started", "Started"
    SAVED = "saved", "Saved"
    AUTOSAVED = "autosaved", "Autosaved"
    RESTORED = "restored", "Restored"
    CONFLICT = "conflict", "Kept from a conflicting edit"
    AMENDMENT = "amendment", "Amendment started from the released version"
    COMPLETION = "completion", "Completion as final started from the released version"
    CANCELLATION = "cancellation", "Cancellation"


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


class SignatureMeaning(models.TextChoices):
    AUTHORED = "authored", "Authored"
    VERIFIED = "verified", "Verified"
    AMENDED = "amended", "Amended"
    CANCELLED = "cancelled", "Cancelled"


class Signature(models.Model):
    """An electronic signature: who signed which version, when, meaning what (21 CFR 11.50).

    `content_hash` is SHA-256 of the version's canonical content, which names the report and the
    version number (see `reports.signing`): editing the content, pointing the row at another
    version or copying it to another report all make verification fail (RELIABILITY SIG-04).
    Rows are never changed.
    """

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="signatures")
    version = models.ForeignKey(ReportVersion, on_delete=models.PROTECT, related_name="signatures")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # As shown when signing; kept even if the account's name changes later.
    printed_name = models.CharField(max_length=300)
    meaning = models.CharField(max_length=20, choices=SignatureMeaning.choices)
    signed_at = models.DateTimeField(db_default=Now())
    content_hash = models.CharField(max_length=64)
    # The one-time token of the signing form: a second POST of the same form finds this row and
    # gets the first one's result instead of a second signature (RELIABILITY SUB-02).
    token = models.UUIDField(unique=True, null=True, blank=True)

    class Meta:
        ordering = ["signed_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "signer", "meaning"], name="one_signature_per_meaning"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_meaning_display()} by {self.printed_name}"


class Review(models.Model):
    """A supervisor's decision on a signed report: verified, or returned to its author with a
    comment the author reads (the comment is kept here, not in the audit trail, which holds ids
    and kinds only)."""

    class Decision(models.TextChoices):
        VERIFIED = "verified", "Verified"
        RETURNED = "returned", "Returned to the author"

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="reviews")
    version = models.ForeignKey(ReportVersion, on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_decision_display()}: report {self.report_id} v{self.version_id}"


class Amendment(models.Model):
    """A change to a released report, its completion as final, or its cancellation, with the
    reason (CLIA 493.1291(k)).

    Started from the released version, which stays as it was with its signatures; the new
    content is a new draft version that is signed (and, by setting, reviewed) and then sent as
    `PATCH /v1/labs/{id}`. A report has at most one open amendment. Rows change only to record
    the version sent and when it was released or discarded.
    """

    class Kind(models.TextChoices):
        AMENDED = "amended", "Amended"
        CORRECTED = "corrected", "Corrected"
        APPENDED = "appended", "Appended"
        # An early release (registered, partial, preliminary) completed as the final report.
        COMPLETION = "completion", "Completion as final"
        CANCELLED = "cancelled", "Cancelled"

    class Reason(models.TextChoices):
        MISIDENTIFICATION = "misidentification", "Misidentification (patient or specimen)"
        SPECIMEN = "specimen", "Specimen problem"
        INTERPRETATION = "interpretation", "Interpretation"
        REPORT_DEFECT = "report_defect", "Report defect"
        # Only a completion's, and a completion has no other.
        RESULTS_COMPLETE = "results_complete", "Results complete"
        OTHER = "other", "Other"

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="amendments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    explanation = models.TextField()
    # The released version the amendment starts from and is compared with.
    released_version = models.ForeignKey(ReportVersion, on_delete=models.PROTECT, related_name="+")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(db_default=Now())
    # The signed version queued for ClinikAPI (the latest, if ClinikAPI returned an earlier one).
    version = models.ForeignKey(
        ReportVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)
    discarded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["report"],
                condition=models.Q(released_at__isnull=True, discarded_at__isnull=True),
                name="one_open_amendment_per_report",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} report {self.report_id}: {self.get_reason_display()}"

    @property
    def is_open(self) -> bool:
        return self.released_at is None and self.discarded_at is None

    @property
    def is_completion(self) -> bool:
        return self.kind == self.Kind.COMPLETION

    @property
    def status(self) -> str:
        """The status its version is sent with: the kind itself, but `final` for a completion."""
        return "final" if self.is_completion else str(self.kind)


class Notification(models.Model):
    """Something a person should see on their next page: a report returned or verified."""

    class Kind(models.TextChoices):
        RETURNED = "returned", "Returned to you by a supervisor"
        VERIFIED = "verified", "Verified by a supervisor"
        REFUSED = "refused", "Refused by ClinikAPI"

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    created_at = models.DateTimeField(db_default=Now())
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="notification_unread_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: report {self.report_id}"


class SubmissionState(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SENDING = "sending", "Being sent"
    UNKNOWN = "unknown", "Outcome unknown: being checked"
    SENT = "sent", "Sent"
    RETURNED = "returned", "Refused by ClinikAPI: back to the author"
    PARKED = "parked", "Held: needs an administrator"


WAITING_STATES = (SubmissionState.PENDING, SubmissionState.SENDING, SubmissionState.UNKNOWN)


class SubmissionQuerySet(models.QuerySet["Submission"]):
    def waiting(self) -> SubmissionQuerySet:
        return self.filter(state__in=WAITING_STATES)


class Submission(models.Model):
    """The transactional outbox: one request ClinikAPI must receive exactly once.

    Created in the transaction that releases the report (RELIABILITY SUB-01) and sent by the
    release worker (`reports.outbox`), never by a web request. `token` is the one-time token of the
    form that asked for it; its unique constraint absorbs double clicks and parallel POSTs
    (SUB-02). `payload` is the signed body without file data; the files travel by SHA-256 and
    are added when the request is built.
    """

    class Operation(models.TextChoices):
        CREATE = "create", "POST /v1/labs"
        UPDATE = "update", "PATCH /v1/labs/{id}"

    class ReadBack(models.TextChoices):
        NOT_YET = "", "Not read back yet"
        MATCH = "match", "Matches what was signed"
        MISMATCH = "mismatch", "Differs from what was signed"

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="submissions")
    version = models.ForeignKey(ReportVersion, on_delete=models.PROTECT, related_name="+")
    signature = models.ForeignKey(Signature, on_delete=models.PROTECT, related_name="+")
    operation = models.CharField(max_length=10, choices=Operation.choices)
    token = models.UUIDField(unique=True)
    payload = models.JSONField()
    payload_hash = models.CharField(max_length=64)
    state = models.CharField(
        max_length=10, choices=SubmissionState.choices, default=SubmissionState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    # A worker holds a row while it works on it; a lease that runs out means the worker died,
    # and a row it held while sending goes through reconciliation (SUB-10).
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    unknown_since = models.DateTimeField(null=True, blank=True)
    reconcile_checks = models.PositiveSmallIntegerField(default=0)
    remote_id = models.CharField(max_length=128, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    issues = models.JSONField(default=list, blank=True)
    read_back = models.CharField(max_length=10, choices=ReadBack.choices, blank=True)
    read_back_differences = models.JSONField(default=list, blank=True)
    # The signed report as PDF, rendered once before the first attempt and sent on every one.
    pdf = models.BinaryField(null=True, blank=True)
    pdf_title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    objects = SubmissionQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="submission_due_idx")]

    def __str__(self) -> str:
        return f"Submission {self.pk} of report {self.report_id} ({self.state})"

    @property
    def is_waiting(self) -> bool:
        return self.state in WAITING_STATES


class SubmissionAttempt(models.Model):
    """One try at ClinikAPI for a submission, with how it ended (RELIABILITY SUB-03)."""

    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="tries")
    action = models.CharField(max_length=20)  # send, reconcile, read_back
    worker = models.CharField(max_length=100)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=30, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    error_code = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["started_at", "pk"]

    def __str__(self) -> str:
        return f"{self.action} of submission {self.submission_id}: {self.outcome or 'running'}"


class Transmission(models.Model):
    """One row shared by every worker: the global pause, the breaker and holds (SUB-06..08).

    ClinikAPI's rate limit is per organisation, so a 429 pauses every worker, not the one that
    saw it; workers lock this row to read and change it.
    """

    class Hold(models.TextChoices):
        NONE = "", "Sending"
        QUOTA = "quota", "Transmission paused: quota"
        CREDENTIALS = "credentials", "Transmission paused: ClinikAPI refused the key"

    paused_until = models.DateTimeField(null=True, blank=True)
    hold = models.CharField(max_length=20, choices=Hold.choices, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    breaker_open_until = models.DateTimeField(null=True, blank=True)
    unreachable_since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.get_hold_display()


class Alert(models.Model):
    """Something an administrator has to act on; shown to staff and logged at ERROR."""

    kind = models.CharField(max_length=40)
    message = models.TextField()
    submission = models.ForeignKey(
        Submission, on_delete=models.PROTECT, null=True, blank=True, related_name="alerts"
    )
    created_at = models.DateTimeField(db_default=Now())
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.kind
