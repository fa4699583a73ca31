"""B4 — throughput and tail latency of the main views on 2 cores.

Starts the production server command (gunicorn, 2 sync workers, `clinikui.wsgi`) over a
throwaway demo database — the clinician has 50 drafts, one of them with 30 versions, and 11
signed final reports await review, one of them `clinician2`'s with 30 versions — on 127.0.0.1
(bench/demo_server.py), signs the clinician and the supervisor in through the login form, and
runs `wrk -c 8 -t 2 -d 8s --latency` against `/ping/` (the same-run floor), then with the
clinician's session cookie the drafts list, the composer and the history page, with the
supervisor's the review page of the 30-version report and the review queue, the composer once
more asking for gzip (as a browser does), then `/ping/` again and `/ping/` without a cookie.
Prints requests per second, p50/p99 latency and each view's rps / ping rps against the targets
(≥ 300 rps, p99 ≤ 50 ms, ratio ≥ 0.1); a non-2xx answer counts as an error. The server is
stopped and its files removed on exit.

    .venv/bin/python bench/views_load.py [--duration 8] [--no-wait]

Needs Debian's wrk (`apt-get install -y wrk`) and gunicorn in the venv.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_server import (  # noqa: E402
    SUPERVISOR,
    USERNAME,
    DemoServer,
    load_average,
    wait_for_quiet_machine,
)

MIN_RPS = 300.0
MAX_P99_MS = 50.0
MIN_RATIO = 0.1
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * UNITS_MS[match[2]]


def run_wrk(
    name: str, url: str, cookie: str, *, duration: int, headers: tuple[str, ...] = ()
) -> WrkResult:
    command = [
        "wrk",
        "-c",
        "8",
        "-t",
        "2",
        "-d",
        f"{duration}s",
        "--timeout",
        "5s",
        "--latency",
        *(["-H", f"Cookie: {cookie}"] if cookie else []),
        *(argument for header in headers for argument in ("-H", header)),
        url,
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 30, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non_2xx[1]) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(name, rps, p50, p99, requests, errors)


def check_pages(server: DemoServer, pages: dict[str, tuple[str, str, str]]) -> None:
    """Each page answers 200 for the user signed in with its cookie and shows what it should."""
    import urllib.request

    review = f"R-{server.review_report_id:06d}"
    expected = {
        "drafts": ("My drafts", f"/reports/{server.draft_ids[-1]}/"),
        "compose": ("History (30 versions)", 'id="preview"'),
        "history": ("All versions", "Restore as a new version"),
        "review": (f"Review report {review}", "(version 30)", 'id="verify-form"'),
        "review queue": (
            'id="review-table"',
            *(f'href="/review/{pk}/"' for pk in server.review_ids),
        ),
    }
    for name, (path, cookie, username) in pages.items():
        request = urllib.request.Request(server.url(path), headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            if response.status != 200 or "/accounts/login/" in response.url:
                raise RuntimeError(f"{path} did not answer 200 for the signed-in {username}")
        for text in expected.get(name, ()):
            if text not in body:
                raise RuntimeError(f"{path} does not show {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for load < 1.5")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    measure(duration=args.duration, wait=not args.no_wait, label="SQLite as configured")


def measure(*, duration: int, wait: bool, label: str) -> None:
    with DemoServer() as server:
        cookie = server.sign_in(USERNAME)
        supervisor = server.sign_in(SUPERVISOR)
        draft = server.long_draft_id
        # name: (path, the session cookie it is measured with, whose it is)
        pages = {
            "drafts": ("/reports/", cookie, USERNAME),
            "compose": (f"/reports/{draft}/", cookie, USERNAME),
            "history": (f"/reports/{draft}/history/", cookie, USERNAME),
            "review": (f"/review/{server.review_report_id}/", supervisor, SUPERVISOR),
            "review queue": ("/review/", supervisor, SUPERVISOR),
        }
        check_pages(server, pages)
        # One request each first, so the composer's API options are cached in both workers.
        for _ in range(4):
            check_pages(server, pages)
        load_before = wait_for_quiet_machine() if wait else load_average()
        results = [run_wrk("ping", server.url("/ping/"), cookie, duration=duration)]
        for name, (path, page_cookie, _) in pages.items():
            results.append(run_wrk(name, server.url(path), page_cookie, duration=duration))
        # wrk asks for no compression; a browser does, and the page is then gzipped per request.
        results.append(
            run_wrk(
                "compose, gzip",
                server.url(pages["compose"][0]),
                cookie,
                duration=duration,
                headers=("Accept-Encoding: gzip",),
            )
        )
        results.append(run_wrk("ping (again)", server.url("/ping/"), cookie, duration=duration))
        # The floor without a session: what the server does when no session row is written.
        results.append(run_wrk("ping, no cookie", server.url("/ping/"), "", duration=duration))
        load_after = load_average()

    pings = [r.rps for r in results if r.name in ("ping", "ping (again)")]
    ping_rps = sum(pings) / len(pings)
    print(
        f"\nB4 — {label}; gunicorn 2 sync workers, wrk -c 8 -t 2 -d {duration}s; "
        f"load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print(f"{'view':<16}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'/ping':>8}{'errors':>8}  verdict")
    for r in results:
        ratio = r.rps / ping_rps
        if r.name.startswith("ping"):
            verdict = ""
        else:
            met = r.rps >= MIN_RPS and r.p99_ms <= MAX_P99_MS and ratio >= MIN_RATIO
            verdict = "✔" if met and r.errors == 0 else "✘"
            verdict += (
                f" (rps {'✔' if r.rps >= MIN_RPS else '✘'},"
                f" p99 {'✔' if r.p99_ms <= MAX_P99_MS else '✘'},"
                f" ratio {'✔' if ratio >= MIN_RATIO else '✘'})"
            )
        print(
            f"{r.name:<16}{r.rps:>9.1f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{ratio:>8.3f}{r.errors:>8}  {verdict}"
        )
    print(f"ping rps (mean of the two runs): {ping_rps:.1f}")


if __name__ == "__main__":
    main()
