"""Ranked search over the local code systems.

Semantics: every typed word must prefix-match a word of one designation, in any order; case and
accents do not matter; an exact code comes first, then matches on the preferred term before
synonyms, then by rank (where the release has one), then shorter terms first; active concepts
only unless asked. Fewer than 3 characters that are not a code return nothing without touching
the database. How the order is built into the index keys is explained in `indexing.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import connection
from django.db.backends.utils import CursorWrapper

from terminology import indexing
from terminology.models import LOINC, SNOMED, Concept

SYSTEMS = {"loinc": LOINC, "snomed": SNOMED}
MIN_CHARACTERS = 3
# How many index rows are read per partition: enough for the deduplication of several
# designations of one concept, few enough that "blo" over 1.5 M rows stays a few milliseconds.
CANDIDATES = 200
# PostgreSQL: how many matches the GIN index may return before a query counts as a common
# prefix and is answered by walking the key order instead (see `_postgresql_keys`).
PROBE_CAP = 5000
MAX_LIMIT = 50
# Longer input is cut, not refused: nobody types more, and a pasted essay must still answer.
MAX_QUERY_CHARACTERS = 200
MAX_WORDS = 8
_CODE_SHAPES = {
    LOINC: re.compile(r"^(?:LP|LA|LL)?\d{1,7}-\d$", re.IGNORECASE),
    SNOMED: re.compile(r"^\d{6,18}$"),
}


@dataclass(frozen=True, slots=True)
class Match:
    system: str
    code: str
    display: str


def looks_like_code(system: str, text: str) -> bool:
    shape = _CODE_SHAPES.get(system)
    return bool(shape and shape.match(text))


def search(
    system: str,
    query: str,
    *,
    limit: int = 10,
    all_scopes: bool = False,
    include_inactive: bool = False,
) -> list[Match]:
    """The best `limit` concepts of `system` (a URI) for what a person typed."""
    limit = max(1, min(limit, MAX_LIMIT))
    text = query.strip()[:MAX_QUERY_CHARACTERS]
    words = indexing.normalise(text).split()[:MAX_WORDS]
    is_code = looks_like_code(system, text)
    if not is_code and len(" ".join(words)) < MIN_CHARACTERS:
        return []

    ranges = indexing.key_ranges(system, all_scopes=all_scopes, include_inactive=include_inactive)
    ordered_ids: list[int] = []
    if is_code:
        # A code is looked up, not searched: its digits as word prefixes ("58410"*, "2"*) would
        # only scan the index for noise.
        ordered_ids.extend(_exact_code(system, text, ranges))
    elif words:
        ordered_ids.extend(_matching_concepts(words, ranges))

    unique_ids = list(dict.fromkeys(ordered_ids))[:limit]
    found = {
        pk: Match(system=system, code=code, display=display)
        for pk, code, display in Concept.objects.filter(pk__in=unique_ids).values_list(
            "pk", "code", "display"
        )
    }
    return [found[pk] for pk in unique_ids if pk in found]


def _exact_code(system: str, text: str, ranges: list[tuple[int, int]]) -> list[int]:
    code = text.upper() if system == LOINC else text
    concept = (
        Concept.objects.filter(system=system, code=code)
        .values_list("pk", "in_scope", "active")
        .first()
    )
    if concept is None:
        return []
    pk, in_scope, active = concept
    partition = indexing.partition_of(system, in_scope=in_scope)
    probe = (partition << indexing.PARTITION_SHIFT) | (0 if active else indexing.INACTIVE_BIT)
    return [pk] if any(low <= probe <= high for low, high in ranges) else []


def _matching_concepts(words: list[str], ranges: list[tuple[int, int]]) -> list[int]:
    keys: list[int] = []
    with connection.cursor() as cursor:
        for low, high in ranges:
            if connection.vendor == "postgresql":
                keys.extend(_postgresql_keys(cursor, words, low, high))
            else:
                keys.extend(_sqlite_keys(cursor, words, low, high))
    keys.sort(key=indexing.order_of)
    return [indexing.concept_id_of(key) for key in keys]


# The words hold only letters and digits (normalise), so quoting them is all the escaping the
# query languages need; they still travel as parameters.


def _sqlite_keys(cursor: CursorWrapper, words: list[str], low: int, high: int) -> list[int]:
    # FTS5 walks the matching rowids (keys) in order inside the range and stops at the cap;
    # migration 0003 gives it prefix indexes for 1 to 6 characters, so short and two-word
    # queries read one doclist per word instead of merging every word with that prefix.
    cursor.execute(
        "SELECT rowid FROM terminology_searchterm_fts"
        " WHERE terminology_searchterm_fts MATCH %s AND rowid BETWEEN %s AND %s"
        " ORDER BY rowid LIMIT %s",
        [" ".join(f'"{word}"*' for word in words), low, high, CANDIDATES],
    )
    return [key for (key,) in cursor.fetchall()]


def _postgresql_keys(cursor: CursorWrapper, words: list[str], low: int, high: int) -> list[int]:
    # A GIN index cannot return rows in key order, and the planner cannot tell "zzq" (nothing)
    # from "blo" (thousands) before it runs, so the search asks twice at most:
    # 1. the GIN index, for at most PROBE_CAP matches; fewer than the cap is every match, and
    #    the best CANDIDATES of them are the answer — rare words, long prefixes, most two-word
    #    queries;
    # 2. at the cap the matches are dense, so walking the primary key from the range's start
    #    reaches CANDIDATES matches after a few thousand rows. `ts_match_vq` is the `@@`
    #    operator as a plain function, which the planner cannot answer with the GIN index:
    #    it keeps this an ordered walk instead of a bitmap of every match and a sort.
    # The lexemes carry the partition marker and every word prefix up to PREFIX_LENGTH
    # (migration 0004): a typed word that short is one exact lexeme per marker of the range,
    # whose posting list holds only that partition; only a longer word is a prefix match.
    markers = range(low >> indexing.MARKER_SHIFT, (high >> indexing.MARKER_SHIFT) + 1)
    words_query = " & ".join(
        "(" + " | ".join(_lexeme_query(marker, word) for marker in markers) + ")" for word in words
    )
    cursor.execute(
        "SELECT key, count(*) OVER () FROM ("
        " SELECT key FROM terminology_searchterm WHERE search_vector @@ %s::tsquery LIMIT %s"
        ") AS probe ORDER BY key LIMIT %s",
        [words_query, PROBE_CAP, CANDIDATES],
    )
    rows = cursor.fetchall()
    if not rows or rows[0][1] < PROBE_CAP:
        return [key for key, _ in rows]
    cursor.execute(
        "SELECT key FROM terminology_searchterm WHERE key BETWEEN %s AND %s"
        " AND ts_match_vq(search_vector, %s::tsquery)"
        " ORDER BY key LIMIT %s",
        [low, high, words_query, CANDIDATES],
    )
    return [key for (key,) in cursor.fetchall()]


def _lexeme_query(marker: int, word: str) -> str:
    # Written as tsquery text, not parsed by `to_tsquery`: the stored lexemes are the words
    # split on spaces, and a word holds only letters and digits, so quoting is enough.
    prefix = ":*" if len(word) > indexing.PREFIX_LENGTH else ""
    return f"'{indexing.lexeme(marker, word)}'{prefix}"
