"""The structural PDF validator for clinicians' uploads (RELIABILITY FILE-01..03, B6)."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import math
import sys
import time
from pathlib import Path

import pikepdf
import pytest

from reports import pdf_validation
from reports.pdf_validation import (
    CLINIKAPI_BODY_LIMIT,
    MAX_ATTACHMENT_BYTES,
    REJECTION_CODES,
    REPORT_JSON_ROOM,
    SIGNED_PDF_MAX_BYTES,
    PDFRejected,
    SandboxLimits,
    ValidatedPDF,
    human_size,
    sanitize_filename,
    validate_pdf,
    validate_pdf_in_process,
)
from tests.pdfs import samples

SANDBOX_CHILD = Path(samples.__file__).with_name("sandbox_child.py")


@functools.cache
def hostile() -> dict[str, samples.Sample]:
    return samples.hostile_samples()


@functools.cache
def clean() -> dict[str, tuple[samples.Sample, int]]:
    return samples.clean_samples()


def rejection(sample: samples.Sample) -> PDFRejected:
    with pytest.raises(PDFRejected) as caught:
        validate_pdf_in_process(sample.data, filename=sample.filename, max_bytes=sample.max_bytes)
    return caught.value


# --- the corpus -------------------------------------------------------------------------------


def test_the_corpus_has_at_least_40_hostile_and_20_clean_samples() -> None:
    assert len(samples.HOSTILE_BUILDERS) >= 40
    assert len(samples.CLEAN_BUILDERS) >= 20


@pytest.mark.parametrize("name", list(samples.HOSTILE_BUILDERS))
def test_every_hostile_sample_is_rejected_for_the_right_reason(name: str) -> None:
    sample = hostile()[name]

    refused = rejection(sample)

    assert refused.code in sample.codes, refused.detail
    assert refused.code in REJECTION_CODES
    assert str(refused) == refused.message


@pytest.mark.parametrize("name", list(samples.CLEAN_BUILDERS))
def test_every_clean_sample_is_accepted_with_its_page_count(name: str) -> None:
    sample, pages = clean()[name]

    checked = validate_pdf_in_process(sample.data, filename=sample.filename)

    assert checked.page_count == pages
    assert checked.size == len(sample.data)


def test_an_accepted_pdf_is_described_by_its_hash_size_pages_and_a_safe_name() -> None:
    data = samples.save(samples.document(2))

    checked = validate_pdf_in_process(data, filename="../../etc/Lab\u202eresults.pdf")

    assert checked == ValidatedPDF(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        page_count=2,
        filename="Labresults.pdf",
    )


# --- what the walk proves ---------------------------------------------------------------------


def test_qpdf_decodes_hex_escaped_names_so_the_walk_sees_javascript() -> None:
    data = hostile()["javascript behind hex-escaped names"].data
    assert b"/J#61vaScript" in data and b"/JavaScript" not in data and b"/JS" not in data

    with pikepdf.open(io.BytesIO(data)) as pdf:
        names_tree = pdf.Root.Names

        assert list(names_tree.keys()) == ["/JavaScript"]
    assert rejection(hostile()["javascript behind hex-escaped names"]).code == "javascript"


def test_javascript_compressed_inside_an_object_stream_is_found_without_any_byte_search() -> None:
    sample = hostile()["javascript inside an object stream"]
    assert b"JavaScript" not in sample.data and b"/ObjStm" in sample.data

    assert rejection(sample).code == "javascript"


def test_dangerous_words_in_text_do_not_reject_a_clean_file() -> None:
    sample, _ = clean()["dangerous words as text"]
    assert b"/JavaScript" in sample.data and b"/OpenAction" in sample.data

    checked = validate_pdf_in_process(sample.data, filename=sample.filename)

    assert checked.page_count == 1


def test_reference_cycles_end_the_walk_instead_of_looping() -> None:
    sample, _ = clean()["harmless reference cycle"]

    started = time.perf_counter()
    validate_pdf_in_process(sample.data, filename="cycle.pdf")

    assert time.perf_counter() - started < 1


def test_the_walk_reports_where_it_found_the_forbidden_name() -> None:
    refused = rejection(hostile()["javascript in an unreferenced object"])

    assert refused.detail == "/JS in object 5 0"


def test_the_flate_bomb_is_refused_before_it_is_fully_inflated() -> None:
    sample = hostile()["flate bomb"]

    refused = rejection(sample)

    assert refused.message == (
        "This PDF expands to more than 50 MB when opened, which ClinikUI does not accept."
    )
    assert len(sample.data) < 100_000


def test_files_qpdf_would_repair_are_refused_as_damaged() -> None:
    refused = rejection(hostile()["wrong stream length"])

    assert refused.code == "damaged"
    assert "expected endstream" in refused.detail or "length" in refused.detail.lower()


def test_web_email_internal_and_next_page_links_are_allowed() -> None:
    sample, _ = clean()["web, e-mail, internal and next-page links"]

    assert validate_pdf_in_process(sample.data, filename="links.pdf").page_count == 2


def test_samples_claimed_linearized_and_versioned_really_are() -> None:
    with pikepdf.open(io.BytesIO(clean()["linearized"][0].data)) as pdf:
        assert pdf.is_linearized

    assert clean()["pdf 1.4"][0].data.startswith(b"%PDF-1.4")
    assert clean()["pdf 1.7"][0].data.startswith(b"%PDF-1.7")


# --- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "javascript in the names tree",
            "This PDF contains JavaScript, which ClinikUI does not accept.",
        ),
        ("not a pdf named .pdf", "This file is not a PDF."),
        ("encrypted with a user password", "This PDF is password-protected."),
        ("encrypted with an owner password only", "This PDF is password-protected."),
        ("pdf named .txt", "Only PDF files (ending in .pdf) can be attached."),
        ("201 pages", "This PDF has 201 pages; attachments can have at most 200."),
    ],
)
def test_rejections_explain_the_problem_to_the_clinician(name: str, message: str) -> None:
    assert rejection(hostile()[name]).message == message


def test_a_file_too_big_is_refused_with_both_sizes_in_the_message() -> None:
    data = b"%PDF-1.7\n" + bytes(1_300_000) + b"%%EOF"

    with pytest.raises(PDFRejected) as caught:
        validate_pdf_in_process(data, filename="scan.pdf")

    assert caught.value.code == "too-big"
    assert caught.value.message == (
        f"This file is 1.4 MB; attachments can be at most {human_size(MAX_ATTACHMENT_BYTES)} "
        "so the report fits ClinikAPI's 1 MiB limit."
    )


def test_the_size_limit_can_be_lowered_to_what_other_attachments_left() -> None:
    data = samples.save(samples.document())

    with pytest.raises(PDFRejected) as caught:
        validate_pdf_in_process(data, filename="a.pdf", max_bytes=len(data) - 1)

    assert caught.value.code == "too-big"


# --- the size cap -----------------------------------------------------------------------------


def test_the_size_cap_is_the_largest_raw_size_whose_base64_fits_beside_the_report() -> None:
    def base64_length(raw: int) -> int:
        return 4 * math.ceil(raw / 3)

    # The signed report PDF travels in the same body as the clinician's own attachments.
    beside = REPORT_JSON_ROOM + base64_length(SIGNED_PDF_MAX_BYTES)

    assert base64_length(MAX_ATTACHMENT_BYTES) + beside <= CLINIKAPI_BODY_LIMIT
    assert base64_length(MAX_ATTACHMENT_BYTES + 1) + beside > CLINIKAPI_BODY_LIMIT
    assert len(base64.b64encode(bytes(MAX_ATTACHMENT_BYTES))) == base64_length(MAX_ATTACHMENT_BYTES)


def test_a_worst_case_report_with_full_attachments_and_the_signed_pdf_fits() -> None:
    astral = "\U0001d4b3"  # escaped by json.dumps as two \uXXXX: 12 characters
    body = {
        "status": "final",
        "code": {"system": "http://loinc.org", "code": "58410-2", "display": "x" * 200},
        "category": "LAB",
        "patientId": "pt_" + "x" * 60,
        "encounterId": "enc_" + "x" * 60,
        "effectiveDateTime": "2026-11-24T07:40:00Z",
        "resultIds": [f"obs_{n:060d}" for n in range(100)],
        "conclusion": astral * 5000,
        "conclusionCodes": [
            {"system": "http://snomed.info/sct", "code": "1" * 18, "display": "y" * 200}
            for _ in range(20)
        ],
        "performer": "pr_" + "x" * 60,
        "resultsInterpreter": "pr_" + "x" * 60,
        "specimenIds": [f"spc_{n:060d}" for n in range(20)],
        "basedOn": [f"sr_{n:060d}" for n in range(10)],
        "presentedForm": [
            {
                "contentType": "application/pdf",
                "title": "z" * 255,
                "data": base64.b64encode(bytes(MAX_ATTACHMENT_BYTES)).decode(),
            },
            {
                "contentType": "application/pdf",
                "title": "ClinikUI report R-999999 v999 (signed)",
                "data": base64.b64encode(bytes(SIGNED_PDF_MAX_BYTES)).decode(),
            },
        ],
    }

    assert len(json.dumps(body)) <= CLINIKAPI_BODY_LIMIT


@pytest.mark.parametrize(
    ("size", "round_up", "text"),
    [
        (0, False, "0 bytes"),
        (999, False, "999 bytes"),
        (1000, False, "1.0 KB"),
        (4_260, False, "4.2 KB"),
        (4_260, True, "4.3 KB"),
        (581_631, False, "581 KB"),
        (581_632, True, "582 KB"),
        (1_300_000, False, "1.3 MB"),
        (1_300_001, True, "1.4 MB"),
        (50_000_000, False, "50 MB"),
        (12_345_678_901, False, "12 GB"),
    ],
)
def test_human_size_rounds_limits_down_and_refused_sizes_up(
    size: int, round_up: bool, text: str
) -> None:
    assert human_size(size, round_up=round_up) == text


# --- file names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uploaded", "shown"),
    [
        ("report.pdf", "report.pdf"),
        ("Report.PDF", "Report.pdf"),
        ("C:\\Users\\dr\\FBC 2026.pdf", "FBC 2026.pdf"),
        ("/tmp/../../etc/x.pdf", "x.pdf"),
        ('a"b;c<d>.pdf', "a_b_c_d_.pdf"),
        ("tab\there\nnewline.pdf", "tabherenewline.pdf"),
        ("  spaced   out  .pdf ", "spaced out.pdf"),
        (".pdf", "attachment.pdf"),
        ("x" * 300 + ".pdf", "x" * 120 + ".pdf"),
        ("Befund_Mu\u0308ller.pdf", "Befund_M\u00fcller.pdf"),
    ],
)
def test_file_names_are_made_safe_to_display_and_download(uploaded: str, shown: str) -> None:
    assert sanitize_filename(uploaded) == shown


@pytest.mark.parametrize(
    "uploaded", ["report.txt", "report", "report.pdf.exe", "invoice\u202efdp.exe", "report.pdf/"]
)
def test_names_not_ending_in_pdf_are_refused(uploaded: str) -> None:
    with pytest.raises(PDFRejected) as caught:
        sanitize_filename(uploaded)

    assert caught.value.code == "not-pdf-name"


# --- the sandbox (FILE-03) --------------------------------------------------------------------


def test_the_sandboxed_check_accepts_a_clean_pdf_exactly_as_in_process() -> None:
    sample, pages = clean()["outlines"]

    checked = validate_pdf(sample.data, filename="outlines.pdf")

    assert checked == validate_pdf_in_process(sample.data, filename="outlines.pdf")
    assert checked.page_count == pages


@pytest.mark.parametrize(
    "name",
    [
        "javascript in the names tree",
        "javascript inside an object stream",
        "encrypted with a user password",
        "flate bomb",
        "wrong cross-reference offsets",
        "201 pages",
    ],
)
def test_the_sandboxed_check_rejects_like_the_in_process_check(name: str) -> None:
    sample = hostile()[name]

    with pytest.raises(PDFRejected) as caught:
        validate_pdf(sample.data, filename=sample.filename)

    assert caught.value.code == rejection(sample).code
    assert caught.value.message == rejection(sample).message


def test_envelope_problems_are_refused_without_starting_a_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdf_validation, "_child_command", lambda: ["/nonexistent/python"])

    with pytest.raises(PDFRejected) as caught:
        validate_pdf(b"GIF89a;%%EOF", filename="x.pdf")

    assert caught.value.code == "not-pdf"


def misbehave(monkeypatch: pytest.MonkeyPatch, behaviour: str) -> None:
    monkeypatch.setattr(
        pdf_validation,
        "_child_command",
        lambda: [sys.executable, "-I", str(SANDBOX_CHILD), behaviour],
    )


def sandboxed_rejection(limits: SandboxLimits) -> tuple[PDFRejected, float]:
    data = samples.save(samples.document())
    started = time.perf_counter()
    with pytest.raises(PDFRejected) as caught:
        validate_pdf(data, filename="slow.pdf", limits=limits)
    return caught.value, time.perf_counter() - started


def test_a_child_past_the_wall_clock_limit_is_killed_and_the_file_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    misbehave(monkeypatch, "sleep")

    refused, elapsed = sandboxed_rejection(SandboxLimits(wall_seconds=1.0))

    assert refused.code == "could-not-check"
    assert refused.message.startswith("This PDF could not be checked, so it was not attached.")
    assert "no answer within 1.0 s" in refused.detail
    assert elapsed < 5


def test_a_child_past_the_cpu_limit_is_stopped_by_the_kernel_and_the_file_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    misbehave(monkeypatch, "spin")

    refused, elapsed = sandboxed_rejection(SandboxLimits(cpu_seconds=1, wall_seconds=20))

    assert refused.code == "could-not-check"
    assert "exited with -24" in refused.detail or "exited with -9" in refused.detail  # SIGXCPU
    assert elapsed < 10


def test_a_child_past_the_memory_limit_fails_and_the_file_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    misbehave(monkeypatch, "allocate")

    refused, _ = sandboxed_rejection(SandboxLimits(memory_bytes=256 << 20))

    assert refused.code == "could-not-check"
    assert "MemoryError" in refused.detail


@pytest.mark.parametrize("behaviour", ["crash", "lie", "invent_a_code"])
def test_a_child_that_crashes_or_answers_out_of_shape_gets_the_file_rejected(
    monkeypatch: pytest.MonkeyPatch, behaviour: str
) -> None:
    misbehave(monkeypatch, behaviour)

    refused, _ = sandboxed_rejection(SandboxLimits())

    assert refused.code == "could-not-check"


def test_a_child_cannot_write_a_single_byte_to_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    misbehave(monkeypatch, "write_a_file")
    target = Path("/tmp/clinikui-child-wrote-this")
    target.unlink(missing_ok=True)

    refused, _ = sandboxed_rejection(SandboxLimits())

    assert refused.code == "could-not-check"
    assert "File too large" in refused.detail  # RLIMIT_FSIZE (Python ignores SIGXFSZ)
    assert target.stat().st_size == 0
    target.unlink()


def test_the_child_inherits_none_of_the_applications_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    misbehave(monkeypatch, "count_inherited_settings")
    monkeypatch.setenv("CLINIKAPI_SECRET_KEY", "clk_test_CanaryKey7Qx9ZtLeakWatch")

    checked = validate_pdf(samples.save(samples.document()), filename="env.pdf")

    assert checked.page_count == 1
