"""B1 — terminology autocomplete latency, with a same-run `icontains` baseline.

Imports the real LOINC core table (104 k terms) and the SNOMED CT files from ../shared/terminology
into a scratch database, times the htmx suggestions endpoint through Django's test client over a
fixed query mix, then scales SNOMED CT up to 1.5 M designations with synthetic concepts built
from the real SNOMED CT vocabulary and times it again. Prints import time and peak memory.

    .venv/bin/python bench/terminology_search.py                       # SQLite (scratch file)
    DATABASE_URL=postgres://…/scratch .venv/bin/python bench/terminology_search.py
    (on PostgreSQL the terminology tables of that database are emptied first: use a scratch DB)
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "terminology"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinikui.settings")
os.environ.setdefault("CLINIKUI_ENVIRONMENT", "development")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("CLINIKAPI_BASE_URL", "sandbox")
SCRATCH = Path(tempfile.mkdtemp(prefix="clinikui-bench-")) / "bench.sqlite3"
os.environ.setdefault("DATABASE_URL", f"sqlite:///{SCRATCH}")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import include, path  # noqa: E402

from terminology import indexing, search  # noqa: E402
from terminology.indexing import ConceptRecord, Designation  # noqa: E402
from terminology.models import (  # noqa: E402
    LOINC,
    SNOMED,
    Concept,
    ImportRecord,
    LocalSynonym,
    SearchTerm,
)

REPEATS = 15
QUERIES = {
    # kind: (system, query)
    "3 letters, common": [("loinc", "blo"), ("snomed", "dis"), ("loinc", "ser")],
    "3 letters": [("loinc", "hem"), ("snomed", "fra"), ("snomed", "ane")],
    "longer prefix": [("loinc", "hemoglob"), ("snomed", "pneumoni"), ("loinc", "thyrotrop")],
    "two words": [("loinc", "blood count"), ("snomed", "type 2 diab"), ("loinc", "chest xr")],
    "rare": [("snomed", "sarcoid"), ("loinc", "procalciton")],
    "code": [("loinc", "58410-2"), ("snomed", "44054006")],
    "no match": [("loinc", "zzqxv"), ("snomed", "qwxyz abc"), ("snomed", "xylophonez")],
}


def baseline(request: HttpRequest) -> HttpResponse:
    """The naive lookup: every word `icontains` the normalised text, no index, limit 10."""
    system = search.SYSTEMS[request.GET["system"]]
    words = indexing.normalise(request.GET.get("q", "")).split()
    matches = Concept.objects.filter(system=system, active=True)
    for word in words:
        matches = matches.filter(search_text__icontains=word)
    listing = [
        search.Match(system=system, code=c.code, display=c.display)
        for c in matches.only("code", "display")[:10]
    ]
    return render(request, "terminology/_options.html", {"matches": listing, "listbox": "baseline"})


urlpatterns = [
    path("baseline", baseline),
    path("", include("clinikui.urls")),
]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_endpoint(client: Client, url: str, system: str, query: str) -> list[float]:
    timings = []
    params = {"system": system, "q": query, "listbox": "bench"}
    client.get(url, params, headers={"HX-Request": "true"})  # warm caches once
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(url, params, headers={"HX-Request": "true"})
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return timings


def measure(client: Client, label: str) -> None:
    print(f"\n== {label} ({connection.vendor}; {SearchTerm.objects.count():,} designations)")
    print(
        f"{'kind':20} {'ours p50':>9} {'p95':>7} {'max':>7} {'icontains p50':>14} {'p95':>8}  ratio"
    )
    everything: list[float] = []
    base_everything: list[float] = []
    for kind, queries in QUERIES.items():
        ours: list[float] = []
        base: list[float] = []
        for system, query in queries:
            ours += time_endpoint(client, "/terminology/suggestions", system, query)
            base += time_endpoint(client, "/baseline", system, query)
        everything += ours
        base_everything += base
        ratio = percentile(ours, 0.95) / percentile(base, 0.95)
        print(
            f"{kind:20} {percentile(ours, 0.5):9.2f} {percentile(ours, 0.95):7.2f} "
            f"{max(ours):7.2f} {percentile(base, 0.5):14.2f} {percentile(base, 0.95):8.2f}  "
            f"{ratio:.3f}"
        )
    print(
        f"{'ALL':20} {percentile(everything, 0.5):9.2f} {percentile(everything, 0.95):7.2f} "
        f"{max(everything):7.2f} {percentile(base_everything, 0.5):14.2f} "
        f"{percentile(base_everything, 0.95):8.2f}  p99 {percentile(everything, 0.99):.2f}"
    )
    with_few = [search.search(LOINC, q) for q in ("ab", "é", "")]
    assert with_few == [[], [], []]
    print(f"index size: {index_size()}; load average {os.getloadavg()[0]:.2f}")


def index_size() -> str:
    """The search index's size on disk (PostgreSQL: GIN index and the table with its vectors)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_relation_size('terminology_searchterm_vector_gin'),"
                " pg_table_size('terminology_searchterm')"
            )
            gin, table = cursor.fetchone()
            return f"GIN {gin / 2**20:.0f} MB, terminology_searchterm table {table / 2**20:.0f} MB"
        cursor.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'terminology_searchterm_fts%'"
        )
        (fts,) = cursor.fetchone()
        return f"FTS5 {(fts or 0) / 2**20:.0f} MB"


def run_import(*args: str) -> tuple[float, float]:
    """Runs a management command in a child process; (seconds, peak MB of that child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], check=True, stdout=subprocess.DEVNULL
    )
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def synthetic_records(count: int) -> Iterator[ConceptRecord]:
    """SNOMED-shaped concepts whose words follow the real SNOMED CT vocabulary's frequencies."""
    words: list[str] = []
    for term in SearchTerm.objects.filter(concept__system=SNOMED).values_list("words", flat=True):
        words += term.split()
    generator = random.Random(20261124)
    tags = ["disorder", "finding", "procedure", "body structure", "organism", "substance"]
    for n in range(count):

        def term() -> str:
            return " ".join(generator.choices(words, k=generator.randint(2, 6))).capitalize()

        tag = generator.choice(tags)
        yield ConceptRecord(
            code=str(900_000_000_000 + n),
            display=term(),
            designations=(
                Designation("fsn", f"{term()} ({tag})"),
                Designation("synonym", term()),
            ),
            kind=tag,
            in_scope=tag in {"disorder", "finding"},
        )


def main() -> None:
    call_command("migrate", verbosity=0)
    for model in (SearchTerm, Concept, LocalSynonym, ImportRecord):
        model.objects.all().delete()
    print(f"load average at start {os.getloadavg()[0]:.2f}")
    user, _ = User.objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)

    seconds, peak = run_import("import_loinc", str(SHARED / "loinc" / "LoincTableCore_2.78.csv.gz"))
    print(f"LOINC core import (104,054 terms): {seconds:.1f} s, peak {peak:.0f} MB")
    seconds, _ = run_import("import_loinc", str(SHARED / "loinc" / "LoincTableCore_2.78.csv.gz"))
    print(f"LOINC core re-import (updates in place): {seconds:.1f} s")
    run_import("import_loinc", str(SHARED / "loinc" / "loinc_lab_rank_order_sample_2.7x.csv"))
    seconds, peak = run_import(
        "import_snomed", str(SHARED / "snomed" / "snomed_ips_gps_concepts.csv.gz")
    )
    print(f"SNOMED CT concepts import (23,491): {seconds:.1f} s, peak {peak:.0f} MB")

    with override_settings(ROOT_URLCONF=__name__):
        measure(client, "real LOINC core + SNOMED CT IPS/GPS")

        target = 1_500_000 - SearchTerm.objects.filter(concept__system=SNOMED).count()
        started = time.monotonic()
        stored = 0
        with transaction.atomic():
            batch: list[ConceptRecord] = []
            for record in synthetic_records(target // 3 + 1):
                batch.append(record)
                if len(batch) == 2000:
                    stored += indexing.store_concepts(SNOMED, batch)
                    batch = []
            stored += indexing.store_concepts(SNOMED, batch)
        snomed_terms = SearchTerm.objects.filter(concept__system=SNOMED).count()
        print(
            f"\nsynthetic scale-up: {stored:,} concepts in {time.monotonic() - started:.0f} s; "
            f"SNOMED CT now {snomed_terms:,} designations"
        )
        indexing.refresh_statistics()  # as an import does when it ends
        measure(client, "SNOMED CT scaled to 1.5 M designations")


if __name__ == "__main__":
    main()
