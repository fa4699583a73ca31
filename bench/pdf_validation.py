"""B6 (validation half) — how long the upload PDF validator takes, in process and sandboxed.

Builds the samples B6 names with the test corpus generator (tests/pdfs/samples.py): a clean
3-page report, JavaScript in /OpenAction, JavaScript in the names tree, an encrypted file, a
truncated file, not-a-PDF, and a ~10 MB 200-page file (a JPEG per page), plus a Flate bomb.
Times `validate_pdf_in_process` (the qpdf parse and object walk alone) and `validate_pdf` (the
same inside a fresh resource-limited child process, as the application runs it), and prints
p50/p95/max per sample and whether each was rejected.

    .venv/bin/python bench/pdf_validation.py [--runs 50] [--child-runs 20]

The 10 MB file is far above the attachment cap (it would be refused by size before any parse),
so it is checked with `max_bytes` raised to 16 MB: the point is the parser's cost at that size.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pikepdf  # noqa: E402

from reports.pdf_validation import (  # noqa: E402
    MAX_ATTACHMENT_BYTES,
    PDFRejected,
    validate_pdf,
    validate_pdf_in_process,
)
from tests.pdfs import samples  # noqa: E402

BIG_CAP = 16 * 1000 * 1000


def many_page_file(pages: int = 200) -> bytes:
    """About 10 MB: one 360 × 200 noise JPEG (incompressible, ~50 KB) per page."""
    jpeg = samples.noise_jpeg(360, 200)
    pdf = pikepdf.new()
    for _ in range(pages):
        image = pdf.make_stream(
            jpeg,
            Type=pikepdf.Name.XObject,
            Subtype=pikepdf.Name.Image,
            Width=360,
            Height=200,
            ColorSpace=pikepdf.Name.DeviceRGB,
            BitsPerComponent=8,
            Filter=pikepdf.Name.DCTDecode,
        )
        samples.page_with_image(pdf, image)
    return samples.save(pdf)


def bench_samples() -> dict[str, tuple[bytes, int]]:
    hostile = samples.hostile_samples()
    big = many_page_file()
    return {
        "clean, 3 pages": (samples.save(samples.document(3)), MAX_ATTACHMENT_BYTES),
        "JavaScript /OpenAction": (
            hostile["javascript in the open action"].data,
            MAX_ATTACHMENT_BYTES,
        ),
        "names-tree JavaScript": (
            hostile["javascript in the names tree"].data,
            MAX_ATTACHMENT_BYTES,
        ),
        "encrypted (user password)": (
            hostile["encrypted with a user password"].data,
            MAX_ATTACHMENT_BYTES,
        ),
        "truncated": (hostile["truncated"].data, MAX_ATTACHMENT_BYTES),
        "not a PDF": (hostile["not a pdf named .pdf"].data, MAX_ATTACHMENT_BYTES),
        "Flate bomb (54 MB of zeros)": (hostile["flate bomb"].data, MAX_ATTACHMENT_BYTES),
        f"{len(big) / 1e6:.1f} MB, 200 pages": (big, BIG_CAP),
    }


def timed(check: Callable[[], object], runs: int) -> tuple[list[float], str]:
    times = []
    outcome = ""
    for run in range(runs + 1):  # run 0 warms up imports and caches, and is not counted
        started = time.perf_counter()
        try:
            check()
            outcome = "accepted"
        except PDFRejected as exc:
            outcome = f"rejected ({exc.code})"
        if run:
            times.append((time.perf_counter() - started) * 1000)
    return times, outcome


def percentile(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--child-runs", type=int, default=20)
    args = parser.parse_args()

    print(
        f"# {platform.node()} · Python {platform.python_version()} · pikepdf "
        f"{pikepdf.__version__} (qpdf {pikepdf.__libqpdf_version__})"
    )
    print(
        "| sample | size | in-process p50 | p95 | max | sandboxed p50 | p95 | max | outcome |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for name, (data, cap) in bench_samples().items():
        here, outcome = timed(
            functools.partial(validate_pdf_in_process, data, filename="a.pdf", max_bytes=cap),
            args.runs,
        )
        child, child_outcome = timed(
            functools.partial(validate_pdf, data, filename="a.pdf", max_bytes=cap),
            args.child_runs,
        )
        assert outcome == child_outcome, (name, outcome, child_outcome)
        print(
            f"| {name} | {len(data):,} B | {statistics.median(here):.2f} | "
            f"{percentile(here, 0.95):.2f} | {max(here):.2f} | {statistics.median(child):.1f} | "
            f"{percentile(child, 0.95):.1f} | {max(child):.1f} | {outcome} |"
        )


if __name__ == "__main__":
    main()
