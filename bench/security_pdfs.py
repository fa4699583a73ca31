"""F9 — hostile and clean PDFs through the upload validator the application calls.

Run by bench/security.py (`python bench/security_pdfs.py` prints one JSON line). The corpus is
tests/pdfs/samples.py (every hostile and clean builder) plus clean files made here by other
writers: ReportLab, WeasyPrint, Chromium's print-to-PDF (Playwright) and more pikepdf shapes.
Each file goes through `reports.pdf_validation.validate_pdf`, the entry point the upload view
uses (envelope checks, then qpdf in a resource-limited child process). A hostile file is sorted
correctly when it is refused (and the refusal code is noted against the codes its builder lists),
a clean one when it is accepted.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CLINIKUI_CHROMIUM", "/usr/bin/chromium")

REPORT_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Full blood count</title>
<style>body{{font-family:sans-serif;margin:2cm}} table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px}} .page{{page-break-after:always}}</style></head>
<body>{pages}</body></html>"""
PAGE_HTML = """<section class="page"><h1>Full blood count — page {n}</h1>
<p>Patient: Amara N. Okafor, born 9 Nov 1984. Conclusion: mild normocytic anaemia.</p>
<table><tr><th>Test</th><th>Value</th><th>Range</th></tr>
<tr><td>Haemoglobin</td><td>118 g/L</td><td>120–155</td></tr>
<tr><td>Platelets</td><td>240 ×10⁹/L</td><td>150–400</td></tr></table>
{extra}</section>"""


def html_report(pages: int = 1, extra: str = "") -> str:
    body = "".join(PAGE_HTML.format(n=n, extra=extra) for n in range(1, pages + 1))
    return REPORT_HTML.format(pages=body)


def png_data_uri() -> str:
    import base64

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (80, 40), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- other writers -------------------------------------------------------------------------------


def reportlab_builders() -> dict[str, Callable[[], bytes]]:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table

    from tests.pdfs import samples

    def text(*, compress: int = 1, pages: int = 1) -> bytes:
        buffer = io.BytesIO()
        drawing = canvas.Canvas(buffer, pagesize=A4, pageCompression=compress, invariant=1)
        for number in range(1, pages + 1):
            drawing.drawString(72, 760, f"Full blood count, page {number}")
            drawing.drawString(72, 740, "Haemoglobin 118 g/L (120-155)")
            drawing.showPage()
        drawing.save()
        return buffer.getvalue()

    def with_image() -> bytes:
        buffer = io.BytesIO()
        drawing = canvas.Canvas(buffer, pagesize=A4, invariant=1)
        drawing.drawImage(ImageReader(io.BytesIO(samples.noise_jpeg())), 72, 500, 200, 120)
        drawing.drawString(72, 760, "Blood film, x100")
        drawing.showPage()
        drawing.save()
        return buffer.getvalue()

    def with_links() -> bytes:
        buffer = io.BytesIO()
        drawing = canvas.Canvas(buffer, pagesize=A4, invariant=1)
        drawing.bookmarkPage("start")
        drawing.addOutlineEntry("Results", "start")
        drawing.drawString(72, 760, "Guideline: https://www.ncbi.nlm.nih.gov/books/NBK2263/")
        drawing.linkURL("https://www.ncbi.nlm.nih.gov/books/NBK2263/", (72, 755, 400, 770))
        drawing.showPage()
        drawing.save()
        return buffer.getvalue()

    def platypus_table() -> bytes:
        buffer = io.BytesIO()
        styles = getSampleStyleSheet()
        rows = [["Test", "Value", "Range"]] + [
            [f"Analyte {n}", f"{n * 1.5:.1f}", "1-10"] for n in range(1, 120)
        ]
        SimpleDocTemplate(buffer, pagesize=A4, invariant=1).build(
            [Paragraph("Chemistry panel", styles["Title"]), Table(rows)]
        )
        return buffer.getvalue()

    return {
        "reportlab: one text page": text,
        "reportlab: three pages, uncompressed": lambda: text(compress=0, pages=3),
        "reportlab: JPEG image": with_image,
        "reportlab: web link and outline": with_links,
        "reportlab: multi-page table (platypus)": platypus_table,
    }


def weasyprint_builders() -> dict[str, Callable[[], bytes]]:
    from weasyprint import HTML

    def render(html: str) -> bytes:
        return bytes(HTML(string=html).write_pdf())

    return {
        "weasyprint: one page": lambda: render(html_report()),
        "weasyprint: four pages": lambda: render(html_report(4)),
        "weasyprint: link and PNG image": lambda: render(
            html_report(
                1,
                '<p><a href="https://loinc.org/58410-2/">LOINC 58410-2</a></p>'
                f'<img src="{png_data_uri()}" alt="">',
            )
        ),
        "weasyprint: PDF/UA tagged": lambda: bytes(
            HTML(string=html_report(2)).write_pdf(pdf_variant="pdf/ua-1")
        ),
    }


def chromium_builders() -> dict[str, Callable[[], bytes]]:
    made: dict[str, bytes] = {}

    def make_all() -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            page = browser.new_page()
            page.set_content(html_report())
            made["one"] = page.pdf(format="A4")
            page.set_content(
                html_report(3, '<p><a href="https://loinc.org/58410-2/">LOINC 58410-2</a></p>')
            )
            made["links"] = page.pdf(format="A4", tagged=True, outline=True)
            browser.close()

    def get(name: str) -> bytes:
        if not made:
            make_all()
        return made[name]

    return {
        "chromium print-to-PDF: one page": lambda: get("one"),
        "chromium print-to-PDF: tagged, outline, link": lambda: get("links"),
    }


def pikepdf_builders() -> dict[str, Callable[[], bytes]]:
    import pikepdf

    from tests.pdfs import samples

    def merged() -> bytes:
        first = pikepdf.open(io.BytesIO(samples.save(samples.document(2))))
        second = pikepdf.open(io.BytesIO(samples.save(samples.document(3))))
        first.pages.extend(second.pages)
        return samples.save(first)

    def rotated() -> bytes:
        pdf = samples.document(2)
        pdf.pages[0].rotate(90, relative=True)
        pdf.pages[1].obj.CropBox = pikepdf.Array([20, 20, 575, 822])
        return samples.save(pdf)

    def uncompressed_qdf() -> bytes:
        return samples.save(samples.document(2), qdf=True, compress_streams=False)

    def page_labels_and_docinfo() -> bytes:
        pdf = samples.document(3)
        pdf.Root.PageLabels = pikepdf.Dictionary(
            Nums=pikepdf.Array([0, pikepdf.Dictionary(S=pikepdf.Name.r)])
        )
        pdf.docinfo["/Title"] = "Histology report"
        pdf.docinfo["/Producer"] = "Scanner firmware 4.2"
        return samples.save(pdf)

    return {
        "pikepdf: two documents merged": merged,
        "pikepdf: rotated page and crop box": rotated,
        "pikepdf: QDF, uncompressed": uncompressed_qdf,
        "pikepdf: page labels and document info": page_labels_and_docinfo,
    }


def main() -> None:
    started = time.monotonic()
    from reports.pdf_validation import PDFRejected, validate_pdf
    from tests.pdfs import samples

    rows: list[dict[str, Any]] = []

    def check(kind: str, group: str, name: str, data: bytes, filename: str, codes: Any) -> None:
        began = time.monotonic()
        try:
            validate_pdf(data, filename=filename)
            code = ""
        except PDFRejected as exc:
            code = exc.code
        rows.append(
            {
                "kind": kind,
                "group": group,
                "name": name,
                "bytes": len(data),
                "code": code,
                "expected_codes": sorted(codes),
                "correct": bool(code) if kind == "hostile" else not code,
                "ms": round((time.monotonic() - began) * 1000, 1),
            }
        )

    for name, sample in samples.hostile_samples().items():
        group = (
            sorted(sample.codes)[-1] if len(sample.codes) == 1 else "/".join(sorted(sample.codes))
        )
        check("hostile", group, name, sample.data, sample.filename, sample.codes)
    for name, (sample, _pages) in samples.clean_samples().items():
        check("clean", "pikepdf (test corpus)", name, sample.data, sample.filename, ())
    writers = {
        **reportlab_builders(),
        **weasyprint_builders(),
        **chromium_builders(),
        **pikepdf_builders(),
    }
    for name, build in writers.items():
        group = name.split(":")[0]
        try:
            data = build()
        except Exception as exc:  # a writer that cannot run here is reported, not hidden
            rows.append(
                {
                    "kind": "clean",
                    "group": group,
                    "name": name,
                    "bytes": 0,
                    "code": f"not built: {type(exc).__name__}: {exc}"[:200],
                    "expected_codes": [],
                    "correct": False,
                    "ms": 0,
                }
            )
            continue
        check("clean", group, name, data, "report.pdf", ())
    by_group: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "correct": 0})
    for row in rows:
        key = f"{row['kind']}: {row['group']}"
        by_group[key]["n"] += 1
        by_group[key]["correct"] += int(row["correct"])
    print(
        json.dumps(
            {
                "rows": rows,
                "groups": by_group,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("CLINIKUI_ENVIRONMENT", "test")
    os.environ.setdefault("CLINIKAPI_BASE_URL", "sandbox")
    main()
