"""Security figures (RELIABILITY F9–F11, F12, F15–F16 and the static gates) in one run.

    .venv/bin/python bench/security.py [--only xss,csrf,matrix,pdfs,canary,static]
                                       [--pip-audit-service osv|pypi] [--json results.json]

Prints each figure with its target and PASS, FAIL or NOT MEASURED:

1. XSS (F10) — bench/security_xss.py: ≥ 200 payloads through every field ClinikUI shows, each
   page rendered in the system Chromium with dialog traps, a CSP-report listener, a scan for
   surviving markup and marker requests, and a check that each payload reads as text.
2. CSRF (F11) — bench/security_csrf.py: every URL that accepts POST refuses one without a valid
   token (none, another browser's, or a valid one from a foreign Origin).
3. Authorization matrix (F12) — `pytest tests/test_authorization_matrix.py -q -s`.
4. PDFs (F9) — bench/security_pdfs.py: hostile and clean files through the upload validator.
5. Canary leaks (F15/F16) — bench/security_canary.py: a canary key and patient through a real
   session (gunicorn, sandbox over a socket, release worker, Chromium), then a leak scan.
6. Static gates — bandit (medium severity and confidence) and pip-audit.

Each check runs in a process of its own over a throwaway database and removes what it made.
Exit status: 0 every target met; 1 a target was missed (or a check could not run); 2 nothing
was missed but something could not be measured here. docs/security.md explains each check.
Needs the bench extras (`pip install -e '.[bench]'`: bandit, pip-audit, ReportLab) and
Debian's Chromium (`CLINIKUI_CHROMIUM` overrides /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PYTHON = ROOT / ".venv" / "bin" / "python"
VENV_BIN = ROOT / ".venv" / "bin"
PHASES = ("xss", "csrf", "matrix", "pdfs", "canary", "static")
SCANNED = ("clinikui", "reports", "terminology")

MIN_PAYLOADS = 200
MIN_HOSTILE = 40
MIN_CLEAN = 20

PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "NOT MEASURED"


@dataclass
class Figure:
    name: str
    target: str
    status: str = FAIL
    headline: str = ""
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def child_env() -> dict[str, str]:
    return {
        **os.environ,
        "CLINIKUI_ENVIRONMENT": "test",
        "CLINIKAPI_BASE_URL": "sandbox",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def run_json(script: str, timeout: float) -> dict[str, Any]:
    """Runs one bench/security_*.py check; its last line of output is its JSON result."""
    done = subprocess.run(
        [str(PYTHON), str(BENCH / script)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-6:]
        raise RuntimeError(f"{script} exited {done.returncode}: " + " | ".join(tail))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def could_not_run(figure: Figure, exc: BaseException) -> Figure:
    figure.status = FAIL
    figure.headline = f"could not run: {exc}"[:600]
    return figure


# --- 1. XSS ---------------------------------------------------------------------------------


def xss() -> Figure:
    figure = Figure(
        "1. XSS (F10)",
        f"≥ {MIN_PAYLOADS} payloads × every place; executed 0; surviving markup 0; "
        "script CSP reports 0",
    )
    try:
        r = run_json("security_xss.py", timeout=900)
    except Exception as exc:
        return could_not_run(figure, exc)
    payloads, places = r["payloads"], r["places"]
    complete = [p for p in places if p["tested"] == payloads]
    csp = r["csp"]
    script_csp = [c for c in csp if str(c.get("directive", "")).startswith("script-src")]
    style_csp = [c for c in csp if str(c.get("directive", "")).startswith("style-src")]
    other_csp = [c for c in csp if c not in script_csp and c not in style_csp]
    executed = len(r["executed"])
    ok = (
        payloads >= MIN_PAYLOADS
        and len(complete) == len(places)
        and executed == 0
        and r["markup_count"] == 0
        and r["request_count"] == 0
        and r["missing_count"] == 0
        and not script_csp
        and not r["errors"]
    )
    figure.status = PASS if ok else FAIL
    figure.headline = (
        f"{payloads} payloads × {len(places)} places = {payloads * len(places):,} payload-places "
        f"on {r['pages']} pages: executed {executed}, surviving markup {r['markup_count']}, "
        f"requests to a payload's URL {r['request_count']}, not shown as text "
        f"{r['missing_count']}; CSP reports {len(csp)} (script {len(script_csp)}, inline style "
        f"{len(style_csp)}, other {len(other_csp)})"
    )
    figure.lines.append(
        "payload kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(r["categories"].items()))
    )
    by_field: dict[str, list[str]] = {}
    for place in places:
        by_field.setdefault(place["field"], []).append(place["page"])
    for name, pages in by_field.items():
        figure.lines.append(f"{name}: {', '.join(pages)}")
    incomplete = [p for p in places if p["tested"] != payloads]
    for place in incomplete:
        figure.lines.append(
            f"INCOMPLETE {place['field']} on {place['page']}: {place['tested']}/{payloads}"
        )
    for label, items in (
        ("executed", r["executed"]),
        ("surviving markup", r["markup"]),
        ("payload requests", r["requests"]),
        ("not shown as text", r["missing"]),
        ("CSP report", csp),
        ("page error", r["errors"]),
    ):
        for item in items[:10]:
            figure.lines.append(f"{label}: {json.dumps(item, ensure_ascii=False)[:300]}")
    control = r.get("control") or {}
    if control:
        figure.lines.append(
            f"detector control: the same checks catch {control['detected']}/{control['payloads']} "
            "payloads when a page includes them unescaped (element, attribute and script "
            f"contexts, no CSP); inert even there: {len(control['inert'])} "
            f"({'; '.join(repr(t) for t in control['inert'])})"
        )
    figure.lines.append(
        f"seeding {r['seconds_seeding']} s, whole check {r['seconds']} s (in-process sandbox, "
        "Django's LiveServerThread, one Chromium)"
    )
    figure.data = r
    return figure


# --- 2. CSRF --------------------------------------------------------------------------------


def csrf() -> Figure:
    figure = Figure(
        "2. CSRF (F11)",
        "every URL accepting POST answers 403 (Django's CSRF check) without a valid token; "
        "no state change",
    )
    try:
        r = run_json("security_csrf.py", timeout=600)
    except Exception as exc:
        return could_not_run(figure, exc)
    rows = r["post_endpoints"]
    variants = ("no token", "another browser's token", "foreign Origin")
    refused = {
        v: sum(
            1 for row in rows if row["outcomes"][v]["status"] == 403 and row["outcomes"][v]["csrf"]
        )
        for v in variants
    }
    changed = sum(1 for row in rows for v in variants if row["outcomes"][v]["changed"])
    audited = sum(1 for row in rows for v in variants if row["outcomes"][v]["audited"])
    admin = [row for row in rows if row["path"].startswith("/admin/")]
    n = len(rows)
    ok = n > 0 and all(count == n for count in refused.values()) and changed == 0
    figure.status = PASS if ok else FAIL
    other_token = refused["another browser's token"]
    figure.headline = (
        f"{n} endpoints accept POST ({n - len(admin)} ClinikUI and sign-in/out, {len(admin)} "
        f"admin); refused with 403 by the CSRF check: no token {refused['no token']}/{n}, "
        f"another browser's token {other_token}/{n}, foreign Origin "
        f"{refused['foreign Origin']}/{n}; state changes {changed}"
    )
    app_rows = [row for row in rows if not row["path"].startswith("/admin/")]
    figure.lines.append(
        "ClinikUI endpoints: "
        + ", ".join(f"{row['endpoint']} (as {row['as']})" for row in app_rows)
    )
    figure.lines.append(
        f"{len(r['get_only'])} URL patterns answer POST with 405 to every signed-in role; "
        f"{len(r['refused_to_everyone'])} refuse POST to every role (read-only admin pages, "
        f"admin-only JSON); {r['patterns']} URL patterns in all"
    )
    for row in rows:
        bad = [v for v in variants if row["outcomes"][v]["status"] != 403]
        if bad:
            figure.lines.append(f"NOT REFUSED: {row['path']} ({', '.join(bad)})")
    figure.lines.append(
        f"note: CSRF failures written to the audit trail: {audited} of {n * len(variants)} "
        "(RELIABILITY AU-05 asks for them; not a refusal gap, an audit gap — see docs/security.md)"
    )
    if r["missing_from_matrix"]:
        figure.lines.append(
            "note: URL names with no row in the authorization matrix's URLS table (AC-01): "
            + ", ".join(r["missing_from_matrix"])
        )
    figure.data = r
    return figure


# --- 3. Authorization matrix ----------------------------------------------------------------


def matrix() -> Figure:
    figure = Figure("3. Authorization matrix (F12)", "every cell checked; 0 mismatches")
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(PYTHON), "-m", "pytest", "tests/test_authorization_matrix.py", "-q", "-s"],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
    except Exception as exc:
        return could_not_run(figure, exc)
    output = done.stdout + done.stderr
    found = re.search(r"authorization matrix: (\d+) checks, (\d+) mismatches", output)
    outcome = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$", output, re.MULTILINE)
    summary = outcome[-1] if outcome else f"pytest exit {done.returncode}"
    if not found:
        figure.headline = f"no matrix line in the pytest output (exit {done.returncode}): {summary}"
        return figure
    checks, mismatches = int(found[1]), int(found[2])
    figure.status = PASS if mismatches == 0 and done.returncode == 0 else FAIL
    figure.headline = f"{checks} checks, {mismatches} mismatches ({summary})"
    seconds = time.monotonic() - started
    figure.lines.append(f"pytest tests/test_authorization_matrix.py -q -s: {seconds:.0f} s")
    for line in output.splitlines():
        if " as " in line and "expected" in line:
            figure.lines.append(line.strip()[:200])
    figure.data = {"checks": checks, "mismatches": mismatches}
    return figure


# --- 4. PDFs --------------------------------------------------------------------------------


def pdfs() -> Figure:
    figure = Figure(
        "4. PDFs (F9)",
        f"≥ {MIN_HOSTILE} hostile all refused, ≥ {MIN_CLEAN} clean all accepted (100 % sorted)",
    )
    try:
        r = run_json("security_pdfs.py", timeout=600)
    except Exception as exc:
        return could_not_run(figure, exc)
    rows = r["rows"]
    hostile = [row for row in rows if row["kind"] == "hostile"]
    clean = [row for row in rows if row["kind"] == "clean"]
    refused = sum(row["correct"] for row in hostile)
    accepted = sum(row["correct"] for row in clean)
    expected_code = sum(row["code"] in row["expected_codes"] for row in hostile)
    ok = (
        len(hostile) >= MIN_HOSTILE
        and len(clean) >= MIN_CLEAN
        and refused == len(hostile)
        and accepted == len(clean)
    )
    figure.status = PASS if ok else FAIL
    total, right = len(rows), refused + accepted
    figure.headline = (
        f"{right}/{total} sorted correctly ({100 * right / total:.0f} %): hostile refused "
        f"{refused}/{len(hostile)}, clean accepted {accepted}/{len(clean)}"
    )
    for group, counts in r["groups"].items():
        figure.lines.append(f"{group}: {counts['correct']}/{counts['n']}")
    figure.lines.append(
        f"refused with one of the codes its builder expects: {expected_code}/{len(hostile)}; "
        f"slowest check {max(row['ms'] for row in rows):.0f} ms (sandboxed child, validate_pdf)"
    )
    for row in rows:
        if not row["correct"]:
            outcome = row["code"] or "accepted"
            figure.lines.append(f"WRONG: {row['kind']} {row['name']!r}: {outcome}")
    figure.data = r
    return figure


# --- 5. Canary leaks ------------------------------------------------------------------------


def canary() -> Figure:
    figure = Figure(
        "5. Canary leaks (F15/F16)",
        "key: 0 in logs, pages, URLs, headers, cookies, storage, database; "
        "patient: 0 in logs, URLs, storage, audit details",
    )
    try:
        r = run_json("security_canary.py", timeout=600)
    except Exception as exc:
        return could_not_run(figure, exc)
    key_hits = sum(r["key_leaks"].values()) + sum(r["key_shaped"].values())
    phi_hits = sum(r["surname_leaks"].values()) + sum(r["phrase_leaks"].values())
    released = bool(r["released"]) and r["released"][0][0] == "released" and r["released"][0][1]
    cookie_hits = r["cookie_values_in_logs"]
    ok = key_hits == 0 and phi_hits == 0 and cookie_hits == 0 and bool(released)
    figure.status = PASS if ok else FAIL
    figure.headline = (
        f"key leaks {sum(r['key_leaks'].values())} (key-shaped strings "
        f"{sum(r['key_shaped'].values())}) in {len(r['key_leaks'])} sinks; canary surname leaks "
        f"{sum(r['surname_leaks'].values())}, conclusion phrase leaks "
        f"{sum(r['phrase_leaks'].values())} in {len(r['surname_leaks'])} sinks"
    )
    figure.lines.append(
        f"session: {r['key_prefix']} key, patient surname {r['surname']}; released to the "
        f"sandbox as {r['released'][0][1] if released else 'NOT RELEASED'}; {r['requests_seen']} "
        f"browser requests, {r['pages_kept']} bodies kept; log lines: server "
        f"{r['log_lines']['server']}, worker {r['log_lines']['worker']} (DEBUG)"
    )
    figure.lines.append(
        "key, per sink: " + ", ".join(f"{k} {v}" for k, v in r["key_leaks"].items())
    )
    figure.lines.append(
        "surname / phrase, per sink: "
        + ", ".join(f"{k} {v}/{r['phrase_leaks'][k]}" for k, v in r["surname_leaks"].items())
    )
    figure.lines.append(
        f"the redaction filter had to mask a key {r['redacted_in_logs']} times (0: nothing tried);"
        f" session or CSRF cookie values in the logs: {cookie_hits}"
    )
    legit = r["legitimate"]
    figure.lines.append(
        f"shown by design (not leaks): the surname on {legit['pages showing the surname']} pages, "
        f"the phrase on {legit['pages showing the phrase']}; the reports table holds the name "
        f"({'yes' if legit['surname in the database dump'] else 'no'})"
    )
    figure.data = r
    return figure


# --- 6. Static gates ------------------------------------------------------------------------


def nosec_comments() -> list[str]:
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "# nosec" in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:160]}")
    return found


def static(pip_audit_service: str) -> list[Figure]:
    bandit = Figure(
        "6a. bandit",
        "no finding of medium or higher severity and confidence unless justified by # nosec",
    )
    executable = VENV_BIN / "bandit"
    if not executable.exists():
        bandit.status = NOT_MEASURED
        bandit.headline = "not run: bandit is not installed (pip install -e '.[bench]')"
    else:
        done = subprocess.run(
            [str(executable), "-r", *SCANNED, "-f", "json", "-q"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        report = json.loads(done.stdout)
        results = report["results"]
        levels = ("MEDIUM", "HIGH")
        gate = [
            f for f in results if f["issue_severity"] in levels and f["issue_confidence"] in levels
        ]
        below = [f for f in results if f["issue_severity"] in levels and f not in gate]
        low = len(results) - len(gate) - len(below)
        nosec = nosec_comments()
        bandit.status = PASS if not gate else FAIL
        bandit.headline = (
            f"{len(gate)} findings at medium+ severity and confidence; {len(nosec)} # nosec "
            f"comments; {len(below)} medium+ severity at low confidence and {low} low "
            f"severity, below the gate ({report['metrics']['_totals']['loc']:,} lines scanned)"
        )
        for f in gate:
            bandit.lines.append(
                f"FINDING {f['test_id']} {f['filename']}:{f['line_number']}: {f['issue_text']}"
            )
        bandit.lines.extend(f"nosec: {line}" for line in nosec)
        for f in below:
            bandit.lines.append(
                f"below the gate: {f['test_id']} {f['issue_severity'].lower()} severity, "
                f"{f['issue_confidence'].lower()} confidence, {f['filename']}:{f['line_number']}"
                f" — {f['issue_text']}"
            )
        bandit.data = {"gate": len(gate), "nosec": nosec, "below": len(below), "low": low}

    audit = Figure("6b. pip-audit", "0 known vulnerabilities in the venv's installed packages")
    executable = VENV_BIN / "pip-audit"
    if not executable.exists():
        audit.status = NOT_MEASURED
        audit.headline = "not run: pip-audit is not installed (pip install -e '.[bench]')"
        return [bandit, audit]
    try:
        done = subprocess.run(
            [
                str(executable),
                "--vulnerability-service",
                pip_audit_service,
                "--progress-spinner",
                "off",
                "--format",
                "json",
                "--local",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        audit.status = NOT_MEASURED
        audit.headline = f"not run: the {pip_audit_service} service did not answer in 300 s"
        return [bandit, audit]
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        audit.status = NOT_MEASURED
        audit.headline = f"not run: {reason[:300]}"
        if re.search(r"NameResolution|Max retries|ConnectionError|Failed to resolve", done.stderr):
            audit.lines.append(
                f"its vulnerability service ({pip_audit_service}) cannot be reached from this "
                "machine, which reaches package registries only; rerun where it can "
                "(`--pip-audit-service pypi` asks PyPI's JSON API once per installed package)"
            )
        return [bandit, audit]
    dependencies = report.get("dependencies", report)
    vulnerable = [d for d in dependencies if d.get("vulns")]
    audit.status = PASS if not vulnerable else FAIL
    audit.headline = (
        f"{len(vulnerable)} of {len(dependencies)} installed packages with known vulnerabilities "
        f"({pip_audit_service})"
    )
    for d in vulnerable:
        ids = ", ".join(v["id"] for v in d["vulns"])
        audit.lines.append(f"{d['name']} {d['version']}: {ids}")
    return [bandit, audit]


# --- the run --------------------------------------------------------------------------------


def machine() -> str:
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = names[0].strip() if names else ""
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    return (
        f"{os.cpu_count()} cores ({cpu or platform.machine()}), Python "
        f"{platform.python_version()}, load average {load}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PHASES), help="comma-separated checks to run")
    parser.add_argument(
        "--pip-audit-service",
        default="osv",
        choices=("osv", "pypi"),
        help="pip-audit's vulnerability service (default osv)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure's data here")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(PHASES)
    if unknown:
        parser.error(f"unknown checks: {', '.join(sorted(unknown))}")

    started = time.monotonic()
    print(f"ClinikUI security figures — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    figures: list[Figure] = []
    runners = {
        "xss": lambda: [xss()],
        "csrf": lambda: [csrf()],
        "matrix": lambda: [matrix()],
        "pdfs": lambda: [pdfs()],
        "canary": lambda: [canary()],
        "static": lambda: static(args.pip_audit_service),
    }
    for name in PHASES:
        if name not in chosen:
            continue
        began = time.monotonic()
        print(f"\n… running {name}", flush=True)
        for figure in runners[name]():
            figures.append(figure)
            print(f"\n{figure.name}: {figure.status} — {figure.headline}")
            print(f"   target: {figure.target}")
            for line in figure.lines:
                print(f"   {line}")
        print(f"   ({time.monotonic() - began:.0f} s)", flush=True)

    print("\nSummary")
    for figure in figures:
        print(f"  {figure.status:<13} {figure.name}")
    print(f"whole run {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {"name": f.name, "status": f.status, "headline": f.headline, "data": f.data}
                    for f in figures
                ],
                indent=1,
                ensure_ascii=False,
            )
        )
    if any(f.status == FAIL for f in figures):
        return 1
    if any(f.status == NOT_MEASURED for f in figures):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
