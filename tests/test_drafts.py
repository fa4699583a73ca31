"""Draft history: every save is an immutable version; stale saves are kept, never lost."""

from __future__ import annotations

import pytest

from reports import diffs, services
from reports.models import Report, ReportVersion, VersionKind
from reports.payload import ReportContent
from reports.sandbox.seed import FIXED_PATIENT_ID

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(clinician) -> Report:
    return services.start_report(author=clinician, patient_id=FIXED_PATIENT_ID)


def with_conclusion(text: str) -> ReportContent:
    return ReportContent(patient_id=FIXED_PATIENT_ID, conclusion=text)


def test_starting_a_report_reads_the_patient_and_makes_version_one(report, clinician):
    assert (report.patient_name, str(report.patient_birth_date)) == (
        "Amara N. Okafor",
        "1984-11-09",
    )
    assert [(v.number, v.kind) for v in report.versions.all()] == [(1, VersionKind.STARTED)]
    assert report.head == 1 and report.author == clinician


def test_starting_a_report_for_an_unknown_patient_is_refused(clinician):
    with pytest.raises(services.PatientNotFound):
        services.start_report(author=clinician, patient_id="pt_doesnotexist0")

    assert not Report.objects.exists()


def test_every_save_adds_a_version_and_keeps_the_earlier_ones(report, clinician):
    first = services.save_draft(
        report_id=report.pk, author=clinician, base_version=1, content=with_conclusion("One.")
    )
    second = services.save_draft(
        report_id=report.pk,
        author=clinician,
        base_version=first.number,
        content=with_conclusion("One. Two."),
        kind=VersionKind.AUTOSAVED,
    )

    report.refresh_from_db()
    contents = [v.content["conclusion"] for v in report.versions.all()]
    assert contents == ["", "One.", "One. Two."]
    assert (report.head, second.kind) == (3, VersionKind.AUTOSAVED)


def test_saving_unchanged_content_adds_no_version(report, clinician):
    services.save_draft(
        report_id=report.pk, author=clinician, base_version=1, content=with_conclusion("Same.")
    )

    again = services.save_draft(
        report_id=report.pk, author=clinician, base_version=2, content=with_conclusion("Same.")
    )

    assert again.number == 2
    assert report.versions.count() == 2


def test_a_stale_save_is_refused_and_its_text_kept_as_a_conflict_copy(report, clinician):
    services.save_draft(
        report_id=report.pk, author=clinician, base_version=1, content=with_conclusion("Tab A.")
    )

    with pytest.raises(services.DraftConflict) as conflict:
        services.save_draft(
            report_id=report.pk,
            author=clinician,
            base_version=1,
            content=with_conclusion("Tab B wrote this."),
        )

    report.refresh_from_db()
    kept = ReportVersion.objects.get(report=report, number=3)
    assert report.head == 2
    assert (kept.kind, kept.based_on, kept.content["conclusion"]) == (
        VersionKind.CONFLICT,
        1,
        "Tab B wrote this.",
    )
    assert conflict.value.current.number == 2 and conflict.value.kept.number == 3


def test_an_old_version_can_be_restored_as_a_new_one(report, clinician):
    services.save_draft(
        report_id=report.pk, author=clinician, base_version=1, content=with_conclusion("Old.")
    )
    services.save_draft(
        report_id=report.pk, author=clinician, base_version=2, content=with_conclusion("New.")
    )

    restored = services.restore_version(
        report_id=report.pk, author=clinician, number=2, base_version=3
    )

    assert (restored.number, restored.kind, restored.content["conclusion"]) == (
        4,
        VersionKind.RESTORED,
        "Old.",
    )


def test_content_for_another_patient_is_refused(report, clinician):
    with pytest.raises(ValueError, match="patient"):
        services.save_draft(
            report_id=report.pk,
            author=clinician,
            base_version=1,
            content=ReportContent(patient_id="pt_someoneelse1"),
        )


def test_the_diff_shows_changed_fields_and_conclusion_words(report):
    old = ReportContent(patient_id="pt_1", conclusion="Mild anaemia, iron low.", status="partial")
    new = ReportContent(patient_id="pt_1", conclusion="Mild anaemia, ferritin low.", status="final")

    changes = diffs.compare(old, new)

    assert [(c.label, c.before, c.after) for c in changes] == [
        ("Status", "Partial", "Final"),
        ("Conclusion", "Mild anaemia, iron low.", "Mild anaemia, ferritin low."),
    ]
    conclusion = changes[1].segments
    assert [(s.op, s.text) for s in conclusion if s.op != "same"] == [
        ("removed", "iron"),
        ("added", "ferritin"),
    ]
