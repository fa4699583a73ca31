"""Release test helpers: a complete draft, signing it, and ground truth from the sandbox."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import pypdf
from django.contrib.auth.models import User
from django.test import RequestFactory

from reports import clinikapi, outbox, services, workflow
from reports.models import Report, Submission, SubmissionState
from reports.payload import LOINC, SNOMED_CT, CodedConcept, ReportContent
from reports.sandbox.seed import FIXED_PATIENT_ID
from tests.conftest import PASSWORD


def complete_content(
    patient_id: str = FIXED_PATIENT_ID,
    *,
    status: str = "preliminary",
    conclusion: str = "Mild normocytic anaemia.",
    results: int = 3,
) -> ReportContent:
    observations = list(
        clinikapi.iter_all(clinikapi.get_client().search_observations, patient_id=patient_id)
    )
    return ReportContent(
        patient_id=patient_id,
        code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
        category="LAB",
        status=status,
        effective=datetime(2026, 11, 20, 7, 40, tzinfo=UTC),
        result_ids=tuple(sorted(o.id for o in observations)[:results]),
        conclusion=conclusion,
        conclusion_codes=(CodedConcept(SNOMED_CT, "271737000", "Anemia"),),
    )


def draft(author: User, content: ReportContent | None = None) -> Report:
    content = content or complete_content()
    report = services.start_report(author=author, patient_id=content.patient_id)
    services.save_draft(report_id=report.pk, author=author, base_version=1, content=content)
    report.refresh_from_db()
    return report


def sign(
    report: Report,
    author: User,
    *,
    password: str = PASSWORD,
    token: uuid.UUID | None = None,
    version: int | None = None,
) -> workflow.SignResult:
    request = RequestFactory().post("/")
    return workflow.sign_report(
        request=request,
        report_id=report.pk,
        signer=author,
        password=password,
        version_number=version or report.head,
        token=token or uuid.uuid4(),
    )


def database_url() -> str:
    """The test database as a DATABASE_URL, for a worker run as its own process."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def fast_release_settings(settings: Any, *, lag: float = 0.2) -> None:
    """Reconciliation waits scaled with the sandbox's search lag (ratios of 10 s, 30 s, 120 s)."""
    settings.CLINIKUI_RECONCILE_FIRST_CHECK = 3 * lag
    settings.CLINIKUI_RECONCILE_SECOND_CHECK = 12 * lag
    settings.CLINIKUI_BREAKER_COOLDOWN = 0.2
    settings.CLINIKUI_WORKER_LEASE = 5.0


def remote_reports_of(sandbox: Any, report: Report) -> list[dict[str, Any]]:
    """Ground truth: the labs the sandbox stored whose signed PDF names this local report."""
    found = []
    for lab in sandbox.store.labs():
        titles = [item.get("title", "") for item in lab.get("presentedForm", [])]
        if any(report.number in title for title in titles):
            found.append(lab)
    return found


def drain(worker: outbox.Worker, *, until: Any, timeout: float = 20.0) -> None:
    """Step the worker until `until()` holds (waiting out reconciliation delays)."""
    import time

    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            states = list(Submission.objects.values_list("state", "error_code"))
            raise AssertionError(f"worker did not get there in {timeout} s: {states}")
        if not worker.step():
            time.sleep(0.05)


def patches_of(sandbox: Any, report: Report) -> list[dict[str, Any]]:
    """The bodies of every PATCH of the report the sandbox received, in order."""
    return [
        record.body
        for record in sandbox.store.requests
        if record.method == "PATCH" and record.path == f"/v1/labs/{report.remote_id}"
    ]


def settled(report: Report) -> bool:
    """Nothing of the report is left to send or to read back."""
    return (
        not Submission.objects.filter(report=report)
        .exclude(state=SubmissionState.SENT, read_back__in=["match", "mismatch"])
        .exclude(state__in=[SubmissionState.RETURNED, SubmissionState.PARKED])
        .exists()
    )


def pdf_text(data: bytes) -> str:
    """A PDF's text, whitespace collapsed."""
    return " ".join(
        " ".join(page.extract_text().split()) for page in pypdf.PdfReader(io.BytesIO(data)).pages
    )
