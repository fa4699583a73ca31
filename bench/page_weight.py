"""B3 — page weight and load of the compose and review pages, against a minimal SPA built in the
same run.

Ours: the compose page of a draft with 30 versions (signed in as the clinician) and the review
page of a signed report with 30 versions awaiting review (signed in as the supervisor), served
by the production server command (gunicorn, 2 workers, demo environment, bench/demo_server.py)
as production serves them: static files from collectstatic's precompressed copies (WhiteNoise),
pages gzipped by GZipMiddleware; signed in through the login form.
The SPA reference: bench/spa-reference (React + Mantine + @medplum/react ResourceForm for a new
DiagnosticReport) copied to a temp folder, `npm install`ed and built with Vite, then served
statically from 127.0.0.1 with gzip, as a static host would; its FHIR schema is fetched from the
same origin, as a Medplum app fetches it from its server.

For each page, at CPU throttling 1× and 4× (CDP Emulation.setCPUThrottlingRate), a fresh
Chromium context records: bytes on the wire (CDP encodedDataLength, headers included) in total
and for JavaScript, the same bodies gzip-compressed at level 6 (the same compression for both
sides, whatever each server sends), the JS heap after a GC, LCP and CLS from
PerformanceObserver, and long tasks (total blocking time over 50 ms). The page is read through
CDP alone: Playwright's selector engine and `page.evaluate` inject a script whose compilation is
itself a long task (50–70 ms at 4×) on the page's main thread. Then Lighthouse's mobile default
(simulated slow 4G, 4× CPU) on the three pages if it installs and runs. Prints each of our
pages / SPA ratios against the targets, and the long tasks of each load at 4×.

    .venv/bin/python bench/page_weight.py [--runs 3] [--no-lighthouse] [--no-wait]
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_server import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SUPERVISOR,
    DemoServer,
    free_port,
    load_average,
    wait_for_quiet_machine,
)

HERE = Path(__file__).resolve().parent
SPA_SOURCE = HERE / "spa-reference"
LIGHTHOUSE_VERSION = "12.8"
NPM_TIMEOUT = 600
KIB = 1024


@dataclass(frozen=True)
class Page:
    """A page to measure: its name in the tables, address, session cookie and a selector that
    shows it is ready."""

    name: str
    url: str
    cookie: str
    ready: str


# Installed before any page script: LCP, CLS (without recent input) and long tasks.
OBSERVERS = """
window.__b3 = { lcp: 0, cls: 0, longTasks: [] };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__b3.lcp = entry.startTime;
}).observe({ type: "largest-contentful-paint", buffered: true });
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__b3.cls += entry.value;
}).observe({ type: "layout-shift", buffered: true });
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__b3.longTasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
"""


@dataclass
class Load:
    """One page load in a fresh context."""

    wire: int = 0
    wire_js: int = 0
    gzip_total: int = 0
    gzip_js: int = 0
    requests: int = 0
    heap: int = 0
    lcp: float = 0.0
    cls: float = 0.0
    tbt: float = 0.0
    load_event: float = 0.0
    long_tasks: list[list[float]] = field(default_factory=list)  # ms, one list per load
    urls: list[tuple[str, str]] = field(default_factory=list)


# --- the SPA reference -------------------------------------------------------------------------


def build_spa(work: Path) -> Path:
    """Copies the SPA sources to `work`, installs and builds them; returns the dist folder."""
    app = work / "spa"
    shutil.copytree(
        SPA_SOURCE, app, ignore=shutil.ignore_patterns("node_modules", "dist", "package-lock.json")
    )
    for command in (
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        ["npx", "vite", "build", "--logLevel", "warn"],
        ["node", "make-schema.mjs"],
    ):
        subprocess.run(command, cwd=app, check=True, timeout=NPM_TIMEOUT)
    versions = {
        name: json.loads((app / "node_modules" / name / "package.json").read_text())["version"]
        for name in ("vite", "react", "@mantine/core", "@medplum/react")
    }
    print("SPA reference built with " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return app / "dist"


class _GzipStaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built SPA as a static host does: gzip for compressible types, index fallback."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        root = Path(self.directory)
        path = root / self.path.split("?")[0].lstrip("/")
        if not path.is_file():
            path = root / "index.html"
        data = path.read_bytes()
        kind = self.guess_type(str(path))
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-cache")
        if "gzip" in self.headers.get("Accept-Encoding", "") and not kind.startswith("image/"):
            data = gzip.compress(data, compresslevel=6)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serve_static(folder: Path) -> Iterator[str]:
    port = free_port()
    handler = partial(_GzipStaticHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- measuring in Chromium ---------------------------------------------------------------------


def gzip_size(url: str, cookie: str) -> int:
    request = urllib.request.Request(
        url, headers={"Cookie": cookie, "Accept-Encoding": "identity"} if cookie else {}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(gzip.compress(response.read(), compresslevel=6))


def evaluate(cdp: Any, expression: str, *, until: bool = False, timeout: float = 120.0) -> Any:
    """The value of `expression` in the page's own world, through CDP alone; with `until`, polls
    until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        answer = cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        value = answer["result"].get("value")
        if value or not until:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout:.0f} s: {expression}")
        time.sleep(0.05)


def measure_once(browser: Any, url: str, *, cookie: str, ready: str, cpu: float) -> Load:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        if cookie:
            name, _, value = cookie.partition("=")
            context.add_cookies([{"name": name, "value": value, "url": url}])
        context.add_init_script(OBSERVERS)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu})
        kinds: dict[str, tuple[str, str]] = {}
        load = Load()

        def on_response(event: dict[str, Any]) -> None:
            kinds[event["requestId"]] = (event["type"], event["response"]["url"])

        def on_finished(event: dict[str, Any]) -> None:
            kind, address = kinds.get(event["requestId"], ("Other", ""))
            if not address.startswith("http"):
                return  # data: URLs never cross the network
            size = int(event["encodedDataLength"])
            load.wire += size
            load.requests += 1
            if kind == "Script":
                load.wire_js += size
            load.urls.append((kind, address))

        cdp.on("Network.responseReceived", on_response)
        cdp.on("Network.loadingFinished", on_finished)
        page.goto(url, wait_until="load", timeout=120_000)
        # Not page.wait_for_selector or page.evaluate: they inject Playwright's script into the
        # page, and compiling it is a 50–70 ms task at 4× on the page's main thread, which the
        # long-task observer would count as the page's.
        evaluate(cdp, f"document.querySelector({json.dumps(ready)}) !== null", until=True)
        page.wait_for_load_state("networkidle", timeout=120_000)
        page.wait_for_timeout(1000)  # LCP and layout shifts settle; long tasks are reported
        cdp.send("HeapProfiler.collectGarbage")
        load.heap = int(cdp.send("Runtime.getHeapUsage")["usedSize"])
        metrics = evaluate(
            cdp,
            "({...window.__b3, loadEvent: performance.getEntriesByType('navigation')[0]"
            ".loadEventEnd})",
        )
        load.lcp = float(metrics["lcp"])
        load.cls = float(metrics["cls"])
        load.tbt = sum(max(0.0, d - 50) for d in metrics["longTasks"])
        load.load_event = float(metrics["loadEvent"])
        load.long_tasks = [[float(d) for d in metrics["longTasks"]]]
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        return load
    finally:
        context.close()


def measure(browser: Any, url: str, *, cookie: str, ready: str, cpu: float, runs: int) -> Load:
    """Median of `runs` loads (bytes are the same each time; timings vary)."""
    loads = [measure_once(browser, url, cookie=cookie, ready=ready, cpu=cpu) for _ in range(runs)]
    first = loads[0]
    for kind, address in first.urls:
        if not address:
            continue
        size = gzip_size(address, cookie)
        first.gzip_total += size
        if kind == "Script":
            first.gzip_js += size
    return Load(
        wire=first.wire,
        wire_js=first.wire_js,
        gzip_total=first.gzip_total,
        gzip_js=first.gzip_js,
        requests=first.requests,
        heap=int(statistics.median(x.heap for x in loads)),
        lcp=statistics.median(x.lcp for x in loads),
        cls=max(x.cls for x in loads),
        tbt=statistics.median(x.tbt for x in loads),
        load_event=statistics.median(x.load_event for x in loads),
        long_tasks=[tasks for x in loads for tasks in x.long_tasks],
        urls=first.urls,
    )


# --- Lighthouse --------------------------------------------------------------------------------


def install_lighthouse(work: Path) -> Path | None:
    folder = work / "lighthouse"
    folder.mkdir()
    (folder / "package.json").write_text('{"private": true}\n')
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
             f"lighthouse@{LIGHTHOUSE_VERSION}"],
            cwd=folder, check=True, timeout=NPM_TIMEOUT,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"Lighthouse did not install: {exc}")
        return None
    return folder / "node_modules" / ".bin" / "lighthouse"


def run_lighthouse(binary: Path, url: str, *, cookie: str, out: Path) -> dict[str, float] | None:
    flags = " ".join(["--headless=new", *CHROMIUM_ARGS])
    command = [
        str(binary),
        url,
        "--only-categories=performance",
        "--output=json",
        f"--output-path={out}",
        f"--chrome-flags={flags}",
        "--quiet",
    ]
    if cookie:
        command.append("--extra-headers=" + json.dumps({"Cookie": cookie}))
    for attempt in (1, 2):  # now and then Lighthouse loses the trace (NO_NAVSTART): once more
        try:
            subprocess.run(
                command,
                check=True,
                timeout=240,
                env={**os.environ, "CHROME_PATH": CHROMIUM},
                capture_output=True,
            )
            break
        except subprocess.CalledProcessError as exc:
            error = exc.stderr.decode(errors="replace")[-600:]
            print(f"Lighthouse failed on {url} (attempt {attempt}): {error}")
        except subprocess.TimeoutExpired:
            print(f"Lighthouse timed out on {url} (attempt {attempt})")
    else:
        return None
    report = json.loads(out.read_text())
    audits = report["audits"]
    return {
        "score": float(report["categories"]["performance"]["score"] or 0) * 100,
        "fcp": float(audits["first-contentful-paint"]["numericValue"]),
        "lcp": float(audits["largest-contentful-paint"]["numericValue"]),
        "tbt": float(audits["total-blocking-time"]["numericValue"]),
        "cls": float(audits["cumulative-layout-shift"]["numericValue"]),
        "bytes": float(audits["total-byte-weight"]["numericValue"]),
    }


# --- the run -----------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "✔" if ok else "✘"


def verdicts(page: str, ours: Load, ours4: Load, spa: Load, spa4: Load) -> list[str]:
    """The ratios and the B3 targets for one of our pages against the SPA reference."""
    return [
        f"\n{page} / SPA (1×):",
        f"  wire bytes {ours.wire / spa.wire:.3f}; "
        f"gzip bytes {ours.gzip_total / spa.gzip_total:.3f}",
        f"  JS wire {ours.wire_js / spa.wire_js:.3f}; JS gzip {ours.gzip_js / spa.gzip_js:.3f}",
        f"  heap {ours.heap / spa.heap:.3f}; LCP 1× {ours.lcp / spa.lcp:.3f}; "
        f"LCP 4× {ours4.lcp / spa4.lcp:.3f}",
        f"{page} against the targets:",
        f"  transfer ≤ 100 KiB compressed: as served {ours.wire / KIB:.1f} KiB "
        f"{mark(ours.wire <= 100 * KIB)}, gzip {ours.gzip_total / KIB:.1f} KiB "
        f"{mark(ours.gzip_total <= 100 * KIB)}",
        f"  transfer ≤ 0.5× SPA (gzip both): {ours.gzip_total / spa.gzip_total:.3f} "
        f"{mark(ours.gzip_total <= 0.5 * spa.gzip_total)}",
        f"  JS on the wire ≤ 0.3× SPA (gzip both): {ours.gzip_js / spa.gzip_js:.3f} "
        f"{mark(ours.gzip_js <= 0.3 * spa.gzip_js)}",
        f"  TBT ≤ 100 ms at 4× (Playwright long tasks): {ours4.tbt:.0f} ms "
        f"{mark(ours4.tbt <= 100)}",
        f"  CLS ≤ 0.1: 1× {ours.cls:.3f}, 4× {ours4.cls:.3f} "
        f"{mark(max(ours.cls, ours4.cls) <= 0.1)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="loads per page and throttling")
    parser.add_argument("--no-lighthouse", action="store_true")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for load < 1.5")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="clinikui-b3-"))
    try:
        dist = build_spa(work)
        lighthouse = None if args.no_lighthouse else install_lighthouse(work)
        with (
            DemoServer() as server,
            serve_static(dist) as spa_url,
            sync_playwright() as playwright,
        ):

            def session_of(cookie: str) -> str:
                return next(c for c in cookie.split("; ") if c.startswith("sessionid="))

            pages = [
                Page(
                    "compose",
                    server.url(f"/reports/{server.long_draft_id}/"),
                    session_of(server.sign_in()),
                    "#preview",
                ),
                Page(
                    "review",
                    server.url(f"/review/{server.review_report_id}/"),
                    session_of(server.sign_in(SUPERVISOR)),
                    "#return-form",
                ),
                Page("spa", spa_url, "", "form input"),
            ]
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            # Warm all: the composer's API options are cached, the SPA files are read once.
            for page in pages:
                measure_once(browser, page.url, cookie=page.cookie, ready=page.ready, cpu=1)
            load_before = load_average() if args.no_wait else wait_for_quiet_machine()
            results: dict[tuple[str, float], Load] = {}
            for cpu in (1.0, 4.0):
                for page in pages:
                    results[page.name, cpu] = measure(
                        browser,
                        page.url,
                        cookie=page.cookie,
                        ready=page.ready,
                        cpu=cpu,
                        runs=args.runs,
                    )
            browser.close()
            load_mid = load_average()
            lh: dict[str, dict[str, float] | None] = {}
            if lighthouse is not None:
                for page in pages:
                    lh[page.name] = run_lighthouse(
                        lighthouse, page.url, cookie=page.cookie, out=work / f"lh-{page.name}.json"
                    )
            load_after = load_average()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nB3 — compose page (draft with 30 versions) and review page (report with 30 versions "
        f"awaiting review) vs SPA reference; median of {args.runs} loads; load average "
        f"{load_before:.2f} before, {load_mid:.2f} after Playwright, {load_after:.2f} after "
        f"Lighthouse"
    )
    header = (
        f"{'page':<8}{'cpu':>4}{'reqs':>6}{'wire KiB':>10}{'gzip KiB':>10}{'JS wire':>9}"
        f"{'JS gzip':>9}{'heap MiB':>10}{'LCP ms':>8}{'CLS':>7}{'TBT ms':>8}{'load ms':>9}"
    )
    print(header)
    for (name, cpu), r in results.items():
        print(
            f"{name:<8}{cpu:>3.0f}×{r.requests:>6}{r.wire / KIB:>10.1f}"
            f"{r.gzip_total / KIB:>10.1f}{r.wire_js / KIB:>9.1f}{r.gzip_js / KIB:>9.1f}"
            f"{r.heap / KIB / KIB:>10.2f}{r.lcp:>8.0f}{r.cls:>7.3f}{r.tbt:>8.0f}"
            f"{r.load_event:>9.0f}"
        )
    print("\nlong tasks at 4× (ms), each load:")
    for name in ("compose", "review", "spa"):
        runs = "; ".join(
            ", ".join(f"{d:.0f}" for d in tasks) or "none"
            for tasks in results[name, 4.0].long_tasks
        )
        print(f"  {name:<8} {runs}")
    spa, spa4 = results["spa", 1.0], results["spa", 4.0]
    for name in ("compose", "review"):
        print("\n".join(verdicts(name, results[name, 1.0], results[name, 4.0], spa, spa4)))
    s = lh.get("spa")
    if s and any(lh.get(name) for name in ("compose", "review")):
        print("\nLighthouse mobile (simulated slow 4G, 4× CPU):")
        for name in ("compose", "review", "spa"):
            figures = lh.get(name)
            if not figures:
                print(f"  {name:<8} no figures (see the messages above)")
                continue
            print(
                f"  {name:<8} score {figures['score']:.0f}  FCP {figures['fcp']:.0f} ms  "
                f"LCP {figures['lcp']:.0f} ms  TBT {figures['tbt']:.0f} ms  "
                f"CLS {figures['cls']:.3f}  bytes {figures['bytes'] / KIB:.1f} KiB"
            )
        for name in ("compose", "review"):
            o = lh.get(name)
            if not o:
                continue
            print(
                f"  {name}: LCP ≤ 2.5 s: {o['lcp'] / 1000:.2f} s {mark(o['lcp'] <= 2500)};  "
                f"LCP ≤ 0.75× SPA: {o['lcp'] / s['lcp']:.3f} "
                f"{mark(o['lcp'] <= 0.75 * s['lcp'])};  "
                f"TBT ≤ 100 ms: {o['tbt']:.0f} {mark(o['tbt'] <= 100)};  "
                f"CLS ≤ 0.1: {mark(o['cls'] <= 0.1)}"
            )
    elif lighthouse is not None or not args.no_lighthouse:
        print("\nLighthouse: no figures (see the messages above); rely on the Playwright figures.")
    for name in ("compose", "review"):
        print(f"\n{name}: requests (1×):")
        for kind, address in results[name, 1.0].urls:
            print(f"  {kind:<11}{address}")


if __name__ == "__main__":
    main()
