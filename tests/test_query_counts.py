"""B4's other half: the composer's and the supervisor's pages issue a number of queries that does
not grow with the number of drafts, versions, attached files or reports awaiting review (no N+1).
Counts, never timings."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from reports import services, workflow
from reports.models import Attachment, Report, ReportState, ReportVersion, VersionKind
from reports.payload import AttachedFile, CodedConcept, ReportContent
from reports.roles import CLINICIAN
from reports.sandbox.seed import FIXED_PATIENT_ID
from terminology import loading
from tests.conftest import make_user
from tests.releasing import complete_content, sign

pytestmark = pytest.mark.django_db

# Generous ceilings: the point is the equality below; these only catch a gross regression.
MAX_QUERIES_PER_PAGE = 20

LOINC = "http://loinc.org"
SNOMED_CT = "http://snomed.info/sct"


@pytest.fixture(autouse=True)
def starter_terminology() -> None:
    # The composer looks up the display of the chosen codes; give it something to find.
    loading.load_starter_set()


def content(number: int, attachments: tuple[AttachedFile, ...] = ()) -> ReportContent:
    return ReportContent(
        patient_id=FIXED_PATIENT_ID,
        code=CodedConcept(system=LOINC, code="58410-2", display="CBC panel - Blood"),
        category="LAB",
        status="preliminary",
        conclusion=f"Conclusion as of version {number}: haemoglobin {120 + number} g/L.",
        conclusion_codes=(CodedConcept(system=SNOMED_CT, code="271737000", display="Anemia"),),
        attachments=attachments,
    )


def make_draft(author, *, versions: int = 1) -> Report:
    """A draft of the fixed sandbox patient with `versions` versions, written straight to the DB."""
    report = Report.objects.create(
        author=author,
        patient_id=FIXED_PATIENT_ID,
        patient_name="Amara N. Okafor",
        head=versions,
    )
    ReportVersion.objects.bulk_create(
        ReportVersion(
            report=report,
            number=number,
            kind=VersionKind.STARTED if number == 1 else VersionKind.SAVED,
            content=content(number).to_json(),
            author=author,
        )
        for number in range(1, versions + 1)
    )
    return report


def add_versions(report: Report, count: int) -> None:
    first = report.head + 1
    ReportVersion.objects.bulk_create(
        ReportVersion(
            report=report,
            number=number,
            kind=VersionKind.AUTOSAVED,
            content=content(number).to_json(),
            author=report.author,
        )
        for number in range(first, first + count)
    )
    report.head = first + count - 1
    report.save(update_fields=["head"])


def attach_files(report: Report, count: int) -> None:
    """A new head version naming `count` files, stored here (their bytes are not checked)."""
    files = []
    for index in range(count):
        data = b"%PDF-1.7\n" + f"file {index}".encode() + b"\n%%EOF\n"
        sha256 = hashlib.sha256(data).hexdigest()
        Attachment.objects.get_or_create(
            report=report,
            sha256=sha256,
            defaults={
                "filename": f"result-{index}.pdf",
                "size": len(data),
                "page_count": 1,
                "content": data,
                "uploaded_by": report.author,
            },
        )
        files.append(AttachedFile(sha256, f"result-{index}.pdf", len(data)))
    number = report.head + 1
    ReportVersion.objects.create(
        report=report,
        number=number,
        kind=VersionKind.SAVED,
        content=content(number, attachments=tuple(files)).to_json(),
        author=report.author,
    )
    report.head = number
    report.save(update_fields=["head"])


def awaiting_review(author: User, base: ReportContent, *, versions: int) -> Report:
    """A final report with `versions` versions (each saved through the composer's service, so
    each is on the timeline), signed by its author and so awaiting review."""
    report = services.start_report(author=author, patient_id=base.patient_id)
    for number in range(2, versions + 1):
        services.save_draft(
            report_id=report.pk,
            author=author,
            base_version=number - 1,
            content=dataclasses.replace(base, conclusion=f"Version {number}: {base.conclusion}"),
        )
    report.refresh_from_db()
    sign(report, author)
    report.refresh_from_db()
    assert report.state == ReportState.AWAITING_REVIEW
    return report


def returned_and_signed_again(report: Report, reviewer: User, base: ReportContent) -> None:
    """One review round: returned with a comment, changed by its author, and signed again."""
    workflow.return_report(
        report_id=report.pk, reviewer=reviewer, version_number=report.head, comment="Say why."
    )
    services.save_draft(
        report_id=report.pk,
        author=report.author,
        base_version=report.head,
        content=dataclasses.replace(base, conclusion=f"Round {report.head}: {base.conclusion}"),
    )
    report.refresh_from_db()
    sign(report, report.author)
    report.refresh_from_db()
    assert report.state == ReportState.AWAITING_REVIEW


@pytest.fixture
def final_content(settings) -> ReportContent:
    settings.CLINIKUI_REVIEW_REQUIRED = True
    return complete_content(status="final")


@pytest.fixture
def supervisor_client(supervisor: User) -> Client:
    client = Client()
    client.force_login(supervisor)
    return client


def get_ok(client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200, url


def test_the_drafts_list_costs_the_same_queries_for_5_and_50_drafts(
    clinician, clinician_client, django_assert_max_num_queries, django_assert_num_queries
):
    for _ in range(5):
        make_draft(clinician, versions=2)
    get_ok(clinician_client, reverse("reports:drafts"))  # session and permission caches warm
    with django_assert_max_num_queries(MAX_QUERIES_PER_PAGE) as with_5:
        get_ok(clinician_client, reverse("reports:drafts"))

    for _ in range(45):
        make_draft(clinician, versions=2)

    with django_assert_num_queries(len(with_5)):
        response = clinician_client.get(reverse("reports:drafts"))
    assert response.content.decode().count("CBC panel - Blood") == 50


def test_the_composer_costs_the_same_queries_for_2_and_30_versions(
    clinician, clinician_client, django_assert_max_num_queries, django_assert_num_queries
):
    report = make_draft(clinician, versions=2)
    url = reverse("reports:edit", args=[report.pk])
    get_ok(clinician_client, url)  # the composer's ClinikAPI options are cached from here on
    with django_assert_max_num_queries(MAX_QUERIES_PER_PAGE) as with_2:
        get_ok(clinician_client, url)

    add_versions(report, 28)

    with django_assert_num_queries(len(with_2)):
        response = clinician_client.get(url)
    assert "History (30 versions)" in response.content.decode()


def test_the_history_costs_the_same_queries_for_2_and_30_versions(
    clinician, clinician_client, django_assert_max_num_queries, django_assert_num_queries
):
    report = make_draft(clinician, versions=2)
    url = reverse("reports:history", args=[report.pk])
    get_ok(clinician_client, url)
    with django_assert_max_num_queries(MAX_QUERIES_PER_PAGE) as with_2:
        get_ok(clinician_client, url)

    add_versions(report, 28)

    with django_assert_num_queries(len(with_2)):
        response = clinician_client.get(url)
    assert response.content.decode().count("Restore as a new version") == 29


def test_the_composer_costs_the_same_queries_for_1_and_3_attached_files(
    clinician, clinician_client, django_assert_max_num_queries, django_assert_num_queries
):
    report = make_draft(clinician)
    attach_files(report, 1)
    url = reverse("reports:edit", args=[report.pk])
    get_ok(clinician_client, url)
    with django_assert_max_num_queries(MAX_QUERIES_PER_PAGE) as with_1:
        get_ok(clinician_client, url)

    attach_files(report, 3)  # a new version naming three files (the first among them again)

    with django_assert_num_queries(len(with_1)):
        response = clinician_client.get(url)
    assert response.content.decode().count("result-2.pdf") >= 1


def test_the_review_page_costs_the_same_queries_for_2_and_30_versions(
    clinician,
    supervisor,
    supervisor_client,
    final_content,
    django_assert_max_num_queries,
    django_assert_num_queries,
):
    short = awaiting_review(clinician, final_content, versions=2)
    url = reverse("reports:review", args=[short.pk])
    get_ok(supervisor_client, url)
    with django_assert_max_num_queries(MAX_QUERIES_PER_PAGE) as with_2:
        get_ok(supervisor_client, url)

    # The long one has been back to its author twice: more signatures and reviews to list too.
    long = awaiting_review(clinician, final_content, versions=28)
    returned_and_signed_again(long, supervisor, final_content)
    returned_and_signed_again(long, supervisor, final_content)
    assert long.head == 30

    with django_assert_num_queries(len(with_2)):
        response = supervisor_client.get(reverse("reports:review", args=[long.pk]))
    page = response.content.decode()
    assert page.count('class="list-group-item timeline-version"') == 30
    assert page.count('class="list-group-item timeline-signature"') == 3
    assert page.count('class="list-group-item timeline-review"') == 2
    assert 'id="verify-form"' in page


def test_the_review_queue_costs_the_same_queries_for_2_and_12_reports(
    clinician,
    supervisor_client,
    final_content,
    django_assert_max_num_queries,
    django_assert_num_queries,
):
    second = make_user("clinician2", CLINICIAN)
    for author in (clinician, second):
        awaiting_review(author, final_content, versions=2)
    url = reverse("reports:review_queue")
    get_ok(supervisor_client, url)
    with django_assert_max_num_queries(MAX_QUERIES_PER_PAGE) as with_2:
        get_ok(supervisor_client, url)

    for index in range(10):
        awaiting_review(second if index % 2 else clinician, final_content, versions=3)

    with django_assert_num_queries(len(with_2)):
        response = supervisor_client.get(url)
    page = response.content.decode()
    assert Report.objects.filter(state=ReportState.AWAITING_REVIEW).count() == 12
    assert page.count('name="reports"') == 12  # a batch checkbox on each row
