"""Loading terminology content: release imports and the curated starter set.

An import streams records in batches and commits once at the end, so a failure anywhere — a
malformed line half-way through, a full disk — leaves the previous content exactly as it was.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone

from terminology import indexing
from terminology.indexing import ConceptRecord
from terminology.models import LOINC, SNOMED, Concept, ImportRecord, LocalSynonym

BATCH_SIZE = 2000
STARTER_DIR = Path(__file__).resolve().parent / "data"
STARTER_FILES = {
    LOINC: STARTER_DIR / "starter_loinc.csv",
    SNOMED: STARTER_DIR / "starter_snomed.csv",
}
LOCAL_SYNONYMS_FILE = STARTER_DIR / "local_synonyms.csv"

Progress = Callable[[int], None]


def _batches(records: Iterable[ConceptRecord], size: int) -> Iterator[list[ConceptRecord]]:
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def import_records(
    system: str,
    records: Iterable[ConceptRecord],
    *,
    file_name: str,
    source: str = ImportRecord.Source.RELEASE,
    fingerprint: str = "",
    inactive_codes: Iterable[str] = (),
    progress: Progress | None = None,
) -> int:
    """Insert or update every record, all or nothing; returns how many concepts were stored."""
    count = 0
    with transaction.atomic():
        _use_a_large_cache()
        for batch in _batches(records, BATCH_SIZE):
            count += indexing.store_concepts(system, batch)
            if progress:
                progress(count)
        _deactivate(system, inactive_codes)
        ImportRecord.objects.create(
            system=system,
            source=source,
            file_name=file_name,
            fingerprint=fingerprint,
            concept_count=count,
            imported_at=timezone.now(),
        )
    indexing.refresh_statistics()
    return count


def _use_a_large_cache() -> None:
    # SQLite's default 2 MB page cache makes the index B-trees thrash once they outgrow it; an
    # import is short-lived, so give this connection up to 256 MB (allocated only when used).
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size = -262144")


def _deactivate(system: str, codes: Iterable[str]) -> None:
    """Concepts a newer release retired stay resolvable but leave the default search."""
    for batch in itertools.batched(codes, BATCH_SIZE):
        retired = list(Concept.objects.filter(system=system, code__in=batch, active=True))
        for concept in retired:
            concept.active = False
            concept.status = "inactive"
        Concept.objects.bulk_update(retired, ["active", "status"])
        indexing.reindex(retired)


# --- the curated starter set -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StarterResult:
    system: str
    count: int
    skipped_because: str = ""


def _fingerprint(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_starter(path: Path) -> Iterator[ConceptRecord]:
    """The starter files: code, display, kind, in_scope, rank (one deliberate choice a row)."""
    with path.open(encoding="utf-8", newline="") as text:
        for row in csv.DictReader(text):
            yield ConceptRecord(
                code=row["code"],
                display=row["display"],
                status="ACTIVE" if "loinc" in path.name else "",
                kind=row["kind"],
                in_scope=row["in_scope"] == "1",
                rank=int(row["rank"]) if row["rank"] else None,
            )


def load_local_synonyms() -> list[tuple[str, str, str]]:
    systems = {"loinc": LOINC, "snomed": SNOMED}
    with LOCAL_SYNONYMS_FILE.open(encoding="utf-8", newline="") as text:
        return [(systems[r["system"]], r["code"], r["term"]) for r in csv.DictReader(text)]


def load_starter_set() -> list[StarterResult]:
    """Loads the starter set unless it is already loaded or a full release replaced it.

    Fast when there is nothing to do (one query per system), so it can run on every start.
    """
    results = []
    synonyms_changed = _sync_local_synonyms()
    for system, path in STARTER_FILES.items():
        fingerprint = _fingerprint(path, LOCAL_SYNONYMS_FILE)
        latest = ImportRecord.objects.filter(system=system).first()
        if latest and latest.source == ImportRecord.Source.RELEASE:
            results.append(StarterResult(system, 0, "a release file is loaded"))
            continue
        if latest and latest.fingerprint == fingerprint and not synonyms_changed:
            results.append(StarterResult(system, 0, "already loaded"))
            continue
        count = import_records(
            system,
            read_starter(path),
            file_name=path.name,
            source=ImportRecord.Source.STARTER,
            fingerprint=fingerprint,
        )
        results.append(StarterResult(system, count))
    if synonyms_changed:
        indexing.reindex(Concept.objects.filter(code__in={code for _, code, _ in synonyms_changed}))
    return results


def _sync_local_synonyms() -> set[tuple[str, str, str]]:
    """Adds the shipped local synonyms that are missing; returns the ones added."""
    wanted = set(load_local_synonyms())
    present = set(LocalSynonym.objects.values_list("system", "code", "term"))
    missing = wanted - present
    LocalSynonym.objects.bulk_create(
        [LocalSynonym(system=s, code=c, term=t) for s, c, t in sorted(missing)]
    )
    return missing
