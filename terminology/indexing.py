"""Text normalisation, the ranking key, and writing concepts with their index rows.

Both databases index the same normalised words, so they find the same rows: Python folds case
and accents and keeps only letters and digits, and the database tokenizers (FTS5 `unicode61`,
PostgreSQL's `simple` configuration) then only split on spaces.

The ranking is decided here, once, at write time. Every designation gets a 63-bit key:

    bits 60-62  partition   system × scope (see `partition_of`)
    bit  59     inactive    active concepts first
    bit  58     synonym     a match on the preferred term beats a synonym
    bits 47-57  rank        LOINC common test/order rank; 2047 when unranked
    bits 40-46  length      shorter designations first (capped at 127 characters)
    bits 8-39   concept id
    bits 0-7    ordinal     which designation of the concept

On PostgreSQL the row's tsvector (`search_vector`) holds every word and its prefixes of 1 to
`PREFIX_LENGTH` characters, each tagged with the key's top bits (partition and inactive bit,
`key >> MARKER_SHIFT`) as "N~prefix": a typed word of up to 6 characters is then one exact
lexeme whose GIN posting list holds only the searched partition (migration 0004).

A search asks the index for the matching keys inside a partition's key range in ascending
order and stops after a capped number: those first keys *are* the best matches in ranking order,
so the cap never hides a better match however common the typed prefix is.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connection, transaction

from terminology.models import LOINC, SNOMED, Concept, LocalSynonym, SearchTerm

_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")
# Letters Unicode does not decompose into a base letter plus accent ("anaemia" vs "œdème").
_UNDECOMPOSABLE = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d"})
_SEMANTIC_TAG = re.compile(r"\s*\([^()]*\)\s*$")

_SYSTEM_BITS = {LOINC: 0, SNOMED: 1}
_OTHER_SYSTEM = 3
PARTITION_SHIFT = 60
INACTIVE_BIT = 1 << 59
MARKER_SHIFT = 59
SYNONYM_BIT = 1 << 58
RANK_SHIFT = 47
RANK_MAX = 2047
LENGTH_SHIFT = 40
LENGTH_MAX = 127
CONCEPT_SHIFT = 8
CONCEPT_MASK = (1 << 32) - 1
MAX_DESIGNATIONS = 256
# PostgreSQL: word prefixes up to this length are stored as lexemes (migration 0004 agrees).
PREFIX_LENGTH = 6
PARTITION_SPAN = 1 << PARTITION_SHIFT


def normalise(text: str) -> str:
    """Casefolded, accents removed, every run of other characters turned into one space."""
    if text.isascii():  # most release text: nothing to decompose
        return _NOT_ALPHANUMERIC.sub(" ", text.lower()).strip()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    folded = stripped.casefold().translate(_UNDECOMPOSABLE)
    return _NOT_ALPHANUMERIC.sub(" ", folded).strip()


def partition_of(system: str, *, in_scope: bool) -> int:
    """LOINC in/out of the report scope 0/1, SNOMED CT in/out of the conclusion scope 2/3."""
    return _SYSTEM_BITS.get(system, _OTHER_SYSTEM) * 2 + (0 if in_scope else 1)


def key_ranges(system: str, *, all_scopes: bool, include_inactive: bool) -> list[tuple[int, int]]:
    """The inclusive key ranges a search looks in, best partition first."""
    partitions = [partition_of(system, in_scope=True)]
    if all_scopes:
        partitions.append(partition_of(system, in_scope=False))
    span = PARTITION_SPAN if include_inactive else INACTIVE_BIT
    return [(p << PARTITION_SHIFT, (p << PARTITION_SHIFT) + span - 1) for p in partitions]


def concept_id_of(key: int) -> int:
    return (key >> CONCEPT_SHIFT) & CONCEPT_MASK


def order_of(key: int) -> int:
    """The ranking part of a key, comparable across partitions."""
    return key & (PARTITION_SPAN - 1)


@dataclass(frozen=True, slots=True)
class Designation:
    use: str
    value: str


@dataclass(frozen=True, slots=True)
class ConceptRecord:
    """One concept as read from a release file, before it is stored."""

    code: str
    display: str
    designations: tuple[Designation, ...] = ()
    active: bool = True
    status: str = ""
    kind: str = ""
    in_scope: bool = False
    rank: int | None = None


def strip_semantic_tag(fsn: str) -> tuple[str, str]:
    """'Anemia (disorder)' → ('Anemia', 'disorder')."""
    found = _SEMANTIC_TAG.search(fsn)
    if not found:
        return fsn, ""
    return fsn[: found.start()], found.group().strip()[1:-1]


def _searchable(designations: list[dict[str, str]], local: list[str]) -> list[tuple[bool, str]]:
    """(is_preferred, text) in index order; an FSN is searched without its semantic tag.

    A site's local synonym ranks like a preferred term: sites add one ("cmp", "abg") exactly so
    that the code comes first for it.
    """
    found = []
    for designation in designations:
        value = designation["value"]
        if designation["use"] == "fsn":
            value = strip_semantic_tag(value)[0]
        found.append((designation["use"] == "preferred", value))
    return found + [(True, term) for term in local]


def _index_rows(concept: Concept, local: list[str]) -> list[tuple[int, int, str]]:
    partition = partition_of(concept.system, in_scope=concept.in_scope)
    rank = min(concept.rank, RANK_MAX - 1) if concept.rank else RANK_MAX
    base = (
        (partition << PARTITION_SHIFT)
        | (0 if concept.active else INACTIVE_BIT)
        | (rank << RANK_SHIFT)
        | (concept.pk << CONCEPT_SHIFT)
    )
    rows: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for is_preferred, text in _searchable(concept.designations, local):
        words = normalise(text)
        if not words or words in seen:
            continue
        seen.add(words)
        length = min(len(text), LENGTH_MAX)
        key = base | (0 if is_preferred else SYNONYM_BIT) | (length << LENGTH_SHIFT) | len(rows)
        rows.append((key, concept.pk, words))
        if len(rows) == MAX_DESIGNATIONS:
            break
    return rows


def _designations_of(record: ConceptRecord) -> list[dict[str, str]]:
    preferred = [{"use": "preferred", "value": record.display}]
    return preferred + [
        {"use": d.use, "value": d.value}
        for d in record.designations
        if d.value and not (d.use == "preferred" and d.value == record.display)
    ]


_COLUMNS = (
    "system",
    "code",
    "display",
    "designations",
    "active",
    "status",
    "kind",
    "in_scope",
    "rank",
    "search_text",
)
# Raw SQL, not bulk_create: the ORM's per-object work was 80 % of the import time at 100 k rows.
# INSERT … ON CONFLICT DO UPDATE is the same statement on SQLite (3.24+) and PostgreSQL.
_UPSERT_CONCEPT = (
    f"INSERT INTO terminology_concept ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
    "ON CONFLICT (system, code) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
)
_INSERT_TERM = "INSERT INTO terminology_searchterm (key, concept_id, words) VALUES (%s, %s, %s)"
_INSERT_TERM_WITH_VECTOR = (
    "INSERT INTO terminology_searchterm (key, concept_id, words, search_vector)"
    " VALUES (%s, %s, %s, %s::tsvector)"
)
_INSERT_FTS = "INSERT INTO terminology_searchterm_fts (rowid, words) VALUES (%s, %s)"


def store_concepts(system: str, records: Sequence[ConceptRecord]) -> int:
    """Insert or update one batch of concepts and replace their index rows; returns the count.

    Call inside a transaction: a batch leaves concepts and index consistent, and the caller's
    transaction makes a whole import all-or-nothing.
    """
    by_code: dict[str, ConceptRecord] = {}
    for record in records:  # a later duplicate row of the same code wins, as in an upsert
        by_code[record.code] = record
    if not by_code:
        return 0
    rows = []
    for record in by_code.values():
        designations = _designations_of(record)
        search_text = " | ".join(normalise(d["value"]) for d in designations)
        rows.append(
            (
                system,
                record.code,
                record.display,
                json.dumps(designations, ensure_ascii=False),
                record.active,
                record.status,
                record.kind,
                record.in_scope,
                record.rank,
                search_text,
            )
        )
    with connection.cursor() as cursor:
        cursor.executemany(_UPSERT_CONCEPT, rows)
    concepts = list(
        Concept.objects.filter(system=system, code__in=list(by_code)).only(
            "pk", "system", "code", "designations", "active", "in_scope", "rank"
        )
    )
    _replace_index_rows(concepts)
    return len(concepts)


def _replace_index_rows(concepts: Iterable[Concept]) -> None:
    concepts = list(concepts)
    if not concepts:
        return
    local: dict[tuple[str, str], list[str]] = {}
    synonyms = LocalSynonym.objects.filter(
        system__in={c.system for c in concepts}, code__in=[c.code for c in concepts]
    ).values_list("system", "code", "term")
    for system, code, term in synonyms:
        local.setdefault((system, code), []).append(term)
    SearchTerm.objects.filter(concept_id__in=[c.pk for c in concepts]).delete()
    rows = sorted(
        row for c in concepts for row in _index_rows(c, local.get((c.system, c.code), []))
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.executemany(
                _INSERT_TERM_WITH_VECTOR,
                [(key, pk, words, search_vector(key, words)) for key, pk, words in rows],
            )
            return
        cursor.executemany(_INSERT_TERM, rows)
        if connection.vendor == "sqlite":
            # See migration 0002: FTS5 takes rows fastest in rowid order.
            cursor.executemany(_INSERT_FTS, [(key, words) for key, _, words in rows])


def lexeme(marker: int, text: str) -> str:
    """PostgreSQL: a word or word prefix as stored for rows whose key has this marker."""
    return f"{marker}~{text}"


def search_vector(key: int, words: str) -> str:
    """PostgreSQL: the row's `search_vector` as tsvector text (migration 0004 builds the same).

    Every word and its prefixes of 1 to PREFIX_LENGTH characters, tagged with the key's marker.
    The words hold only letters and digits, so quoting each lexeme is all the escaping needed.
    """
    marker = key >> MARKER_SHIFT
    texts = set()
    for word in words.split():
        texts.add(word)
        texts.update(word[:length] for length in range(1, PREFIX_LENGTH + 1))
    return " ".join(f"'{lexeme(marker, text)}'" for text in texts)


def reindex(concepts: Iterable[Concept]) -> None:
    """Rebuild the index rows of concepts already stored (after their flags or local synonyms
    changed)."""
    with transaction.atomic():
        _replace_index_rows(concepts)


def refresh_statistics() -> None:
    """After a large load on PostgreSQL: fold the GIN index's pending list into the index and
    refresh the planner's statistics.

    Until then every search reads the whole pending list (~5 ms at 104 k rows) and the planner
    estimates from the old table size; autovacuum would get there, but only some time later.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT gin_clean_pending_list('terminology_searchterm_vector_gin')")
        cursor.execute("ANALYZE terminology_searchterm")
        cursor.execute("ANALYZE terminology_concept")
