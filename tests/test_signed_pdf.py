"""The signed report PDF: what it shows, read back from the PDF itself (pypdf and pikepdf)."""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import logging
import socket
import unicodedata
from datetime import UTC, date, datetime

import pikepdf
import pypdf
import pytest
from PIL import Image

from reports import pdf_validation, signed_pdf
from reports.payload import LOINC, SNOMED_CT, AttachedFile, CodedConcept
from reports.pdf_validation import validate_pdf
from reports.signed_pdf import (
    SIGNED_PDF_MAX_BYTES,
    ChangeSection,
    ResultRow,
    SignatureLine,
    SignedPDFTooLarge,
    SignedReportDocument,
    pdf_title,
    render_signed_pdf,
)

CBC = CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count")
ANEMIA = CodedConcept(SNOMED_CT, "271737000", "Anemia")
IRON_DEFICIENCY = CodedConcept(SNOMED_CT, "87522002", "Iron deficiency anemia")
SCAN = AttachedFile("3f" * 32, "cbc-scan.pdf", 48_213)
AUTHOR_HASH = "a1b2c3d4" * 8
SAMPLED = datetime(2026, 11, 24, 7, 40, tzinfo=UTC)  # 08:40 in Berlin (CET)

HEMOGLOBIN = ResultRow(
    name="Hemoglobin [Mass/volume] in Blood",
    value="13.2",
    unit="g/dL",
    reference_range="13.5–17.5 g/dL",
    flag="L",
    is_critical=False,
    is_abnormal=True,
    effective=SAMPLED,
    observation_id="obs_hgb51",
)
POTASSIUM = ResultRow(
    name="Potassium [Moles/volume] in Serum or Plasma",
    value="6.9",
    unit="mmol/L",
    reference_range="3.5–5.1 mmol/L",
    flag="HH",
    is_critical=True,
    is_abnormal=True,
    effective=SAMPLED,
    observation_id="obs_k77",
)
SODIUM = ResultRow(
    name="Sodium [Moles/volume] in Serum or Plasma",
    value="139",
    unit="mmol/L",
    reference_range="136–145 mmol/L",
    flag="",
    is_critical=False,
    is_abnormal=False,
    effective=SAMPLED,
    observation_id="obs_na12",
)


def document(**changes: object) -> SignedReportDocument:
    fields: dict[str, object] = {
        "report_number": "R-000042",
        "version_number": 3,
        "patient_name": "Zoë Okafor",
        "patient_birth_date": date(1984, 11, 9),
        "patient_id": "pt_8f2k1m0a4x7q",
        "code": CBC,
        "category": "LAB",
        "status": "final",
        "effective": SAMPLED,
        "time_zone": "Europe/Berlin",
        "encounter_id": "enc_3n7q0v",
        "results": (HEMOGLOBIN,),
        "specimen_ids": ("spec_b17c", "spec_c22d"),
        "performer": "prac_lab017",
        "results_interpreter": "prac_mlopez",
        "conclusion": "Mild normocytic anaemia.\nRepeat in 4 weeks.",
        "conclusion_codes": (ANEMIA, IRON_DEFICIENCY),
        "attachments": (SCAN,),
        "signatures": (
            SignatureLine(
                printed_name="Dr. Amara Okafor",
                username="aokafor",
                meaning="Authored",
                signed_at=datetime(2026, 11, 24, 9, 12, 5, tzinfo=UTC),
                content_hash=AUTHOR_HASH,
                version_number=3,
            ),
            SignatureLine(
                printed_name="Dr. Lukas Weber",
                username="lweber",
                meaning="Verified",
                signed_at=datetime(2026, 11, 24, 10, 1, 0, tzinfo=UTC),
                content_hash=AUTHOR_HASH,
                version_number=3,
            ),
        ),
        **changes,
    }
    return SignedReportDocument(**fields)  # type: ignore[arg-type]


def many_results(count: int) -> tuple[ResultRow, ...]:
    return tuple(
        dataclasses.replace(
            SODIUM,
            name=f"Analyte number {n}",
            value=f"{100 + n}.5",
            observation_id=f"obs_row{n:03d}",
        )
        for n in range(count)
    )


@functools.cache
def rendered(doc: SignedReportDocument) -> bytes:
    """Each document is rendered once per test session (a render takes 0.1–0.5 s)."""
    return render_signed_pdf(doc)


def page_texts(data: bytes) -> list[str]:
    """Each page's text, whitespace collapsed (table cells wrap) and NFC-normalised."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    return [
        unicodedata.normalize("NFC", " ".join(page.extract_text().split())) for page in reader.pages
    ]


def text_of(data: bytes) -> str:
    return " ".join(page_texts(data))


def drawn_bold(data: bytes, fragment: str) -> set[bool]:
    """For each piece of text the PDF draws that contains `fragment`: is its font bold?"""
    found: set[bool] = set()

    def visit(
        text: str, cm: object, tm: object, font: dict[str, object] | None, size: float
    ) -> None:
        if fragment in text:
            found.add("Bold" in str((font or {}).get("/BaseFont", "")))

    for page in pypdf.PdfReader(io.BytesIO(data)).pages:
        page.extract_text(visitor_text=visit)
    return found


def squeezed(text: str) -> str:
    """Text without any whitespace, for strings a line may break anywhere (after a slash)."""
    return "".join(text.split())


# --- what the PDF shows -----------------------------------------------------------------------


def test_the_pdf_shows_patient_report_results_conclusion_attachments_and_signatures():
    pages = page_texts(rendered(document()))

    assert len(pages) == 1
    text = " ".join(pages)
    for expected in (
        "Zoë Okafor",
        "1984-11-09",
        "pt_8f2k1m0a4x7q",
        "enc_3n7q0v",
        "Report R-000042 · version 3",
        "CBC panel - Blood by Automated count (LOINC 58410-2)",
        "Laboratory (LAB)",
        "Final",
        "Effective date/time 2026-11-24 08:40 CET",
        "All times are shown in Europe/Berlin",
        "spec_b17c, spec_c22d",
        "prac_lab017",
        "prac_mlopez",
        "Hemoglobin [Mass/volume] in Blood",
        "obs_hgb51",
        "13.2 g/dL 13.5–17.5 g/dL L 2026-11-24 08:40 CET",
        "Mild normocytic anaemia. Repeat in 4 weeks.",
        "Anemia (SNOMED CT 271737000)",
        "Iron deficiency anemia (SNOMED CT 87522002)",
        "cbc-scan.pdf",
        f"SHA-256 {SCAN.sha256}",
        "48 KB",
        "Authored by Dr. Amara Okafor (aokafor) · signed 2026-11-24 10:12:05 CET · version 3",
        "Verified by Dr. Lukas Weber (lweber) · signed 2026-11-24 11:01:00 CET · version 3",
        f"SHA-256 of the signed content: {AUTHOR_HASH}",
    ):
        assert expected in text, expected


def test_times_are_shown_in_the_documents_time_zone_named_for_that_instant():
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    doc = document(
        time_zone="America/New_York",
        effective=summer,
        results=(dataclasses.replace(HEMOGLOBIN, effective=SAMPLED),),
    )

    text = text_of(rendered(doc))

    assert "All times are shown in America/New_York" in text
    assert "Effective date/time 2026-07-01 08:00 EDT" in text
    assert "2026-11-24 02:40 EST" in text
    assert "signed 2026-11-24 04:12:05 EST" in text


def test_a_critical_result_is_printed_in_bold_and_flagged_in_words():
    data = rendered(document(results=(HEMOGLOBIN, POTASSIUM, SODIUM)))

    text = text_of(data)

    assert "3 results; 1 CRITICAL, printed in bold and flagged CRITICAL" in text
    assert "6.9 mmol/L 3.5–5.1 mmol/L HH CRITICAL" in text
    assert drawn_bold(data, "6.9 mmol/L") == {True}
    assert drawn_bold(data, "HH CRITICAL") == {True}
    assert drawn_bold(data, "Potassium [Moles/volume]") == {True}
    assert drawn_bold(data, "139 mmol/L") == {False}
    assert drawn_bold(data, "13.2 g/dL") == {False}
    # An abnormal result's flag is bold too, but only a critical one says CRITICAL.
    assert "13.2 g/dL 13.5–17.5 g/dL L 2026-11-24 08:40 CET" in text
    assert text.count("CRITICAL") == 3  # the summary twice, the potassium row once


def test_many_results_run_over_several_pages_each_naming_the_patient_and_report():
    results = many_results(45)

    pages = page_texts(rendered(document(results=results)))

    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert "Zoë Okafor · born 1984-11-09 · patient ID pt_8f2k1m0a4x7q" in page
        assert "Report R-000042 · version 3" in page
        assert f"Page {number} of {len(pages)}" in page
    text = " ".join(pages)
    for row in results:
        assert f"{row.name} {row.observation_id} {row.value} mmol/L 136–145 mmol/L" in text
    # The table's header row repeats on every page it continues on.
    assert sum("Test Value Unit Reference range Flag Time" in page for page in pages) >= 2


def test_an_amendment_shows_what_changed_since_the_released_version_and_why():
    changes = ChangeSection(
        since_version=2,
        kind="corrected",
        reason="The potassium was reported in the wrong unit.",
        changes=(
            ("Conclusion", "Normal potassium.", "Critical hyperkalaemia."),
            ("Conclusion codes", "", "Hyperkalemia (SNOMED CT 14140009)"),
        ),
    )

    text = text_of(rendered(document(changes=changes)))

    assert "Changes since version 2" in text
    assert "Corrected. Reason: The potassium was reported in the wrong unit." in text
    assert "Conclusion Normal potassium. Critical hyperkalaemia." in text
    assert "Conclusion codes — Hyperkalemia (SNOMED CT 14140009)" in text


def test_an_appendix_that_changed_no_field_says_so():
    changes = ChangeSection(since_version=3, kind="appended", reason="Add the iron studies.")

    text = text_of(rendered(document(version_number=4, changes=changes)))

    assert "Changes since version 3 Appended. Reason: Add the iron studies." in text
    assert "No existing content changed." in text


def test_a_report_without_results_effective_time_or_attachments_says_so():
    doc = document(
        results=(),
        effective=None,
        attachments=(),
        conclusion_codes=(),
        patient_birth_date=None,
        encounter_id="",
    )

    text = text_of(rendered(doc))

    assert "Effective date/time —" in text
    assert "No results are part of this report." in text
    assert "No attachments." in text
    assert "born — · patient ID pt_8f2k1m0a4x7q" in text
    assert "Encounter —" in text


def test_accents_and_non_latin_scripts_come_out_as_typed():
    doc = document(
        patient_name="Nguyễn Thị Ánh · Σωκράτης Παπαδόπουλος",
        conclusion="Анемия лёгкой степени. Ψευδοϋπερκαλιαιμία; Ørsted-Ærø façade.",
    )

    text = text_of(rendered(doc))

    assert "Nguyễn Thị Ánh · Σωκράτης Παπαδόπουλος" in text
    assert "Анемия лёгкой степени. Ψευδοϋπερκαλιαιμία; Ørsted-Ærø façade." in text


# --- hostile text and external resources ------------------------------------------------------

HOSTILE = (
    '<script>alert(1)</script> <img src="http://example.invalid/track.png"> '
    '<link rel="attachment" href="file:///etc/passwd"> <a href="javascript:alert(2)">x</a> '
    '<style>@import url("http://example.invalid/x.css");</style>'
)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every outgoing connection attempted while the test runs (none is let through)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_html_typed_into_the_report_is_printed_as_text_and_never_acted_on(connections, caplog):
    doc = document(conclusion=HOSTILE, patient_name="<b>Bobby</b> Tables", performer="<i>x</i>")

    with caplog.at_level(logging.DEBUG, logger="weasyprint"):
        data = render_signed_pdf(doc)

    text = text_of(data)
    assert squeezed(HOSTILE) in squeezed(text)
    assert "<b>Bobby</b> Tables" in text and "<i>x</i>" in text
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert all(not page.get_images() for page in pdf.pages)
        assert "/EmbeddedFiles" not in pdf.Root.get("/Names", {})
        assert all(not page.get("/Annots") for page in pdf.pages)
    assert connections == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    validate_pdf(data, filename="signed.pdf", max_bytes=SIGNED_PDF_MAX_BYTES)


def test_the_renderer_fetches_nothing_even_when_the_html_asks(connections, caplog, tmp_path):
    # A real image on disk: had the fetcher read file: URLs, it would be in the PDF.
    picture = tmp_path / "logo.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    html = f"""<!DOCTYPE html><html><head>
        <link rel="stylesheet" href="http://example.invalid/style.css">
        <link rel="attachment" href="{picture.as_uri()}">
        <style>@import url("http://example.invalid/more.css");
        @font-face {{ font-family: X; src: url("http://example.invalid/x.woff2"); }}</style>
        </head><body><p>Text</p>
        <img src="http://example.invalid/track.png"><img src="{picture.as_uri()}">
        <img src="data:image/png;base64,{base64.b64encode(picture.read_bytes()).decode()}">
        </body></html>"""

    with caplog.at_level(logging.WARNING, logger="weasyprint"):
        data = signed_pdf._pdf_from_html(html)

    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert all(not page.get_images() for page in pdf.pages)
        assert "/EmbeddedFiles" not in pdf.Root.get("/Names", {})
    assert connections == []
    refused = " ".join(r.getMessage() for r in caplog.records)
    assert "example.invalid/track.png" in refused and picture.as_uri() in refused


# --- the file as ClinikAPI receives it --------------------------------------------------------


def test_the_pdf_title_carries_the_report_number_and_version():
    doc = document()

    with pikepdf.open(io.BytesIO(rendered(doc))) as pdf:
        title = str(pdf.docinfo["/Title"])

    assert pdf_title(doc) == "ClinikUI report R-000042 v3 (signed)"
    assert title == pdf_title(doc)


def test_a_three_page_report_is_small_and_passes_the_upload_validator():
    doc = document(results=many_results(45), conclusion=HOSTILE)
    data = rendered(doc)

    checked = validate_pdf(data, filename=pdf_title(doc) + ".pdf", max_bytes=SIGNED_PDF_MAX_BYTES)

    assert checked.page_count >= 3
    assert len(data) < SIGNED_PDF_MAX_BYTES // 2


def test_the_same_document_renders_to_the_same_bytes_dated_by_its_last_signature():
    doc = document()

    first, second = render_signed_pdf(doc), render_signed_pdf(doc)

    assert first == second
    with pikepdf.open(io.BytesIO(first)) as pdf:
        assert str(pdf.docinfo["/CreationDate"]) == "D:20261124100100Z"


def test_a_pdf_over_the_cap_is_refused(monkeypatch):
    monkeypatch.setattr(signed_pdf, "SIGNED_PDF_MAX_BYTES", 1000)

    with pytest.raises(SignedPDFTooLarge) as caught:
        render_signed_pdf(document())

    assert caught.value.size > 1000
    assert "at most 1.0 KB" in str(caught.value)


def test_the_cap_is_the_one_the_attachment_budget_leaves_room_for():
    assert SIGNED_PDF_MAX_BYTES == pdf_validation.SIGNED_PDF_MAX_BYTES


def test_a_naive_time_is_a_bug_not_a_guess():
    with pytest.raises(ValueError, match="naive"):
        render_signed_pdf(document(effective=datetime(2026, 11, 24, 7, 40)))  # noqa: DTZ001
