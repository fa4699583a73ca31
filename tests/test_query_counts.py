"""B4's other half: the composer's pages issue a number of queries that does not grow with the
number of drafts, versions or attached files (no N+1). Counts, never timings."""

from __future__ import annotations

import hashlib

import pytest
from django.urls import reverse

from reports.models import Attachment, Report, ReportVersion, VersionKind
from reports.payload import AttachedFile, CodedConcept, ReportContent
from reports.sandbox.seed import FIXED_PATIENT_ID
from terminology import loading

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
