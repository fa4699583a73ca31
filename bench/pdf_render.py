"""B6 (render half) — how long the signed report PDF takes to render, with ReportLab as reference.

Renders a 1-page and a 3-page signed report (reports/signed_pdf.py: Django template, then
WeasyPrint) in one warm process: a few warm-up renders, then `--runs` timed renders each, and
prints p50/p95/max per document and per page, the PDF sizes, and the first (cold) render. The
same content, worded by the same code, is then drawn with ReportLab's platypus (same DejaVu
fonts, A4, a results table whose header repeats, running header and footer) as the reference;
the WeasyPrint/ReportLab ratio of the medians is what B6 tracks.

    .venv/bin/pip install -e '.[bench]'      # ReportLab, for the reference only
    .venv/bin/python bench/pdf_render.py [--runs 30] [--warmups 3]

Targets (BENCHMARKS.md B6): WeasyPrint 3-page p95 ≤ 500 ms (≤ 200 ms per page); alarm if the
ratio grows more than 2× from the first recorded value (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinikui.settings")
os.environ.setdefault("CLINIKUI_ENVIRONMENT", "development")
os.environ.setdefault("CLINIKAPI_BASE_URL", "sandbox")

import django  # noqa: E402

django.setup()
# WeasyPrint reports every layout step at INFO; the figures are what this script prints.
logging.getLogger("weasyprint").setLevel(logging.WARNING)

import pikepdf  # noqa: E402
import weasyprint  # noqa: E402

from reports import signed_pdf  # noqa: E402
from reports.payload import LOINC, SNOMED_CT, AttachedFile, CodedConcept  # noqa: E402
from reports.signed_pdf import (  # noqa: E402
    ChangeSection,
    ResultRow,
    SignatureLine,
    SignedReportDocument,
    render_signed_pdf,
)

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
SAMPLED = datetime(2026, 11, 24, 7, 40, tzinfo=UTC)
PANEL = [
    ("Hemoglobin [Mass/volume] in Blood", "13.2", "g/dL", "13.5–17.5 g/dL", "L"),
    ("Leukocytes [#/volume] in Blood", "7.1", "10*3/uL", "4.0–11.0 10*3/uL", ""),
    ("Platelets [#/volume] in Blood", "412", "10*3/uL", "150–400 10*3/uL", "H"),
    ("Potassium [Moles/volume] in Serum or Plasma", "6.9", "mmol/L", "3.5–5.1 mmol/L", "HH"),
    ("Sodium [Moles/volume] in Serum or Plasma", "139", "mmol/L", "136–145 mmol/L", ""),
    ("Creatinine [Mass/volume] in Serum or Plasma", "1.02", "mg/dL", "0.70–1.30 mg/dL", ""),
]


def results(count: int) -> tuple[ResultRow, ...]:
    rows = []
    for n in range(count):
        name, value, unit, reference, flag = PANEL[n % len(PANEL)]
        rows.append(
            ResultRow(
                name=name,
                value=value,
                unit=unit,
                reference_range=reference,
                flag=flag,
                is_critical=flag in {"HH", "LL"},
                is_abnormal=bool(flag),
                effective=SAMPLED + timedelta(minutes=n),
                observation_id=f"obs_{n:05d}",
            )
        )
    return tuple(rows)


def document(result_count: int, *, amended: bool) -> SignedReportDocument:
    signed = datetime(2026, 11, 24, 9, 12, 5, tzinfo=UTC)
    return SignedReportDocument(
        report_number="R-000042",
        version_number=3 if amended else 1,
        patient_name="Zoë Okafor",
        patient_birth_date=date(1984, 11, 9),
        patient_id="pt_8f2k1m0a4x7q",
        code=CodedConcept(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
        category="LAB",
        status="corrected" if amended else "final",
        effective=SAMPLED,
        time_zone="Europe/Berlin",
        encounter_id="enc_3n7q0v",
        results=results(result_count),
        specimen_ids=("spec_b17c",),
        performer="prac_lab017",
        results_interpreter="prac_mlopez",
        conclusion=(
            "Hyperkalaemia at a critical level, called to the ward at 09:05.\n"
            "Mild normocytic anaemia; thrombocytosis, likely reactive. Repeat in 4 weeks."
        ),
        conclusion_codes=(
            CodedConcept(SNOMED_CT, "14140009", "Hyperkalemia"),
            CodedConcept(SNOMED_CT, "271737000", "Anemia"),
        ),
        attachments=(AttachedFile("3f" * 32, "cbc-scan.pdf", 48_213),),
        signatures=(
            SignatureLine("Dr. Amara Okafor", "aokafor", "Authored", signed, "a1" * 32, 3),
            SignatureLine(
                "Dr. Lukas Weber", "lweber", "Verified", signed + timedelta(hours=1), "a1" * 32, 3
            ),
        ),
        changes=ChangeSection(
            since_version=2,
            kind="corrected",
            reason="The potassium was reported in the wrong unit.",
            changes=(("Conclusion", "Normal potassium.", "Hyperkalaemia at a critical level."),),
        )
        if amended
        else None,
    )


# --- the ReportLab reference ------------------------------------------------------------------


def reportlab_renderer() -> Callable[[SignedReportDocument], bytes] | None:
    """The same content drawn with ReportLab platypus, or None when ReportLab is not installed."""
    try:
        from reportlab.lib import colors
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.lib.units import mm
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont
        from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    except ImportError:
        return None
    from xml.sax.saxutils import escape

    for name, file in (
        ("DejaVu", "DejaVuSans.ttf"),
        ("DejaVu-Bold", "DejaVuSans-Bold.ttf"),
        ("DejaVu-Mono", "DejaVuSansMono.ttf"),
    ):
        pdfmetrics.registerFont(TTFont(name, str(DEJAVU / file)))
    body = ParagraphStyle("body", fontName="DejaVu", fontSize=8.5, leading=11.5)
    bold = ParagraphStyle("bold", parent=body, fontName="DejaVu-Bold")
    small = ParagraphStyle("small", parent=body, fontSize=7, leading=9)
    mono = ParagraphStyle("mono", parent=body, fontName="DejaVu-Mono", fontSize=7.5)
    h1 = ParagraphStyle("h1", parent=bold, fontSize=13, leading=16, spaceAfter=3)
    h2 = ParagraphStyle("h2", parent=bold, fontSize=10, leading=13, spaceBefore=10, spaceAfter=4)
    width = A4[0] - 30 * mm

    def p(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(escape(text).replace("\n", "<br/>"), style)

    def fields(rows: list[tuple[str, str]]) -> Table:
        """Label-value pairs two to a row, as the HTML lays them out."""
        cells = [[p(label, bold), p(value or "—")] for label, value in rows]
        table = Table(
            [
                cells[i] + (cells[i + 1] if i + 1 < len(cells) else [])
                for i in range(0, len(cells), 2)
            ],
            colWidths=[width * share for share in (0.21, 0.29, 0.21, 0.29)],
        )
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return table

    def render(document: SignedReportDocument) -> bytes:
        shown = signed_pdf._context(document)
        patient = (
            f"{document.patient_name} · born {shown['birth_date'] or '—'} · "
            f"patient ID {document.patient_id}"
        )
        story: list[object] = [
            p(f"Report {document.report_number} · version {document.version_number}", h1),
            p(f"Status: {document.status.capitalize()}. All times are shown in {shown['zone']}."),
            p("Patient", h2),
            p(patient),
        ]
        if document.changes:
            story += [
                p(f"Changes since version {document.changes.since_version}", h2),
                p(f"{document.changes.kind.capitalize()}. Reason: {document.changes.reason}"),
                Table(
                    [["Field", "Before", "After"]]
                    + [[p(a), p(b), p(c)] for a, b, c in document.changes.changes],
                    colWidths=[width * 0.2, width * 0.4, width * 0.4],
                ),
            ]
        story += [
            p("Report", h2),
            fields(
                [
                    ("Report code", str(shown["code"])),
                    ("Encounter", document.encounter_id),
                    ("Category", str(shown["category"])),
                    ("Effective date/time", str(shown["effective"])),
                    ("Specimens", ", ".join(document.specimen_ids)),
                    ("Performer", document.performer),
                    ("Results interpreter", document.results_interpreter),
                ]
            ),
            p("Results", h2),
        ]
        rows: list[list[object]] = [
            [p(h, bold) for h in ("Test", "Value", "Unit", "Reference range", "Flag", "Time")]
        ]
        style = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
            ("LINEBELOW", (0, 1), (-1, -1), 0.3, colors.grey),
        ]
        for index, item in enumerate(shown["results"], start=1):
            row = item.row
            cell = bold if row.is_critical else body
            flag = f"{row.flag} CRITICAL" if row.is_critical else row.flag
            rows.append(
                [
                    [p(row.name, cell), p(row.observation_id, small)],
                    p(row.value, cell),
                    p(row.unit, cell),
                    p(row.reference_range, cell),
                    p(flag, bold if row.is_abnormal else body),
                    p(item.time, cell),
                ]
            )
            if row.is_critical:
                style.append(("BACKGROUND", (0, index), (-1, index), colors.whitesmoke))
        table = Table(
            rows,
            colWidths=[width * share for share in (0.29, 0.10, 0.09, 0.16, 0.14, 0.22)],
            repeatRows=1,
        )
        table.setStyle(TableStyle(style))
        story += [table, p("Conclusion", h2), p(document.conclusion)]
        story += [p(text) for text in shown["conclusion_codes"]]
        story.append(p("Attachments", h2))
        for attached in shown["attachments"]:
            story += [
                p(f"{attached.file.filename} ({attached.size})"),
                p(attached.file.sha256, mono),
            ]
        story.append(p("Electronic signatures", h2))
        for signature in shown["signatures"]:
            line = signature.line
            story += [
                p(f"{line.meaning} by {line.printed_name} ({line.username})", bold),
                p(f"Signed {signature.time} · version {line.version_number}"),
                p(f"SHA-256 of the signed content: {line.content_hash}", mono),
                Spacer(1, 4),
            ]

        def decorate(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont("DejaVu", 7.5)
            canvas.drawString(15 * mm, A4[1] - 10 * mm, "ClinikUI · signed diagnostic report")
            canvas.drawString(15 * mm, 10 * mm, patient)
            canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, f"Page {doc.page}")
            canvas.restoreState()

        out = io.BytesIO()
        SimpleDocTemplate(
            out,
            pagesize=A4,
            leftMargin=15 * mm,
            rightMargin=15 * mm,
            topMargin=18 * mm,
            bottomMargin=18 * mm,
            title=signed_pdf.pdf_title(document),
        ).build(story, onFirstPage=decorate, onLaterPages=decorate)
        return out.getvalue()

    return render


# --- timing -----------------------------------------------------------------------------------


def page_count(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return len(pdf.pages)


def timed(render: Callable[[], bytes], *, runs: int, warmups: int) -> list[float]:
    for _ in range(warmups):
        render()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        render()
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentile(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmups", type=int, default=3)
    args = parser.parse_args()

    documents = {
        "1 page": document(5, amended=False),
        "3 pages": document(30, amended=True),
    }
    started = time.perf_counter()
    render_signed_pdf(documents["1 page"])
    cold = (time.perf_counter() - started) * 1000
    reportlab = reportlab_renderer()

    with open("/proc/loadavg") as file:
        load = file.read().split()[0]
    print(
        f"# {platform.node()} · {os.cpu_count()} CPUs · load {load} · Python "
        f"{platform.python_version()} · WeasyPrint {weasyprint.__version__} · "
        f"{args.runs} runs after {args.warmups} warm-ups · first render in process {cold:.0f} ms"
    )
    print(
        "| document | renderer | pages | size | p50 ms | p95 ms | max ms | p50/page | p95/page |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    medians: dict[tuple[str, str], float] = {}
    for name, doc in documents.items():
        renderers: dict[str, Callable[[], bytes]] = {
            "WeasyPrint": lambda doc=doc: render_signed_pdf(doc),
        }
        if reportlab is not None:
            renderers["ReportLab"] = lambda doc=doc: reportlab(doc)
        for renderer, render in renderers.items():
            data = render()
            pages = page_count(data)
            times = timed(render, runs=args.runs, warmups=args.warmups)
            medians[name, renderer] = statistics.median(times)
            print(
                f"| {name} | {renderer} | {pages} | {len(data):,} B | "
                f"{statistics.median(times):.0f} | {percentile(times, 0.95):.0f} | "
                f"{max(times):.0f} | {statistics.median(times) / pages:.0f} | "
                f"{percentile(times, 0.95) / pages:.0f} |"
            )
    if reportlab is None:
        print("\nReportLab is not installed (pip install -e '.[bench]'): no reference ratio.")
        return
    for name in documents:
        ratio = medians[name, "WeasyPrint"] / medians[name, "ReportLab"]
        print(f"\nWeasyPrint/ReportLab ({name}, medians): {ratio:.1f}×", end="")
    print()


if __name__ == "__main__":
    main()
