"""PostgreSQL: the words' 1- to 6-character prefixes become whole lexemes, tagged with the
partition marker, so that a short typed word reads one GIN posting list (benchmark B1).

Until 0003 a typed word was a prefix query (`'ser':*`), which PostgreSQL 15 answers with a GIN
*partial match*: it gathers the postings of every lexeme starting with the prefix ("ser",
"serum", "serology", … hundreds) in every partition, then intersects them with the partition
marker lexeme "~N", whose posting list holds a whole partition. At 104 k LOINC terms "ser"
took ~8 ms in the index alone. Now each row's `search_vector` holds, for every word, the word
and its prefixes of 1 to 6 characters, each written "N~prefix" with N the row's marker
(`key >> 59`: partition and inactive bit), e.g. "serum" in partition 0 is
'0~s' '0~se' '0~ser' '0~seru' '0~serum'. A typed word of up to 6 characters is then one exact
lexeme whose posting list holds only the searched partition's rows — the PostgreSQL form of the
FTS5 prefix indexes of 0003 — and a longer typed word is a prefix query ('0~hemoglob':*) over
the few lexemes of that partition that start with it.

The column is no longer generated: `terminology.indexing.search_vector` computes it in Python
while it writes the rows (a generated `regexp_replace` expression took 32 s for 318 k rows in
the database, against 4 s for 0003's column). Rows already stored are converted here by one UPDATE that builds the same
lexemes. The words are normalised (letters and digits, one space between words), so they are
split on spaces, as FTS5 does, not by a text-search parser. Still no extension, no superuser.
SQLite is unchanged.
"""

from __future__ import annotations

from django.db import migrations

_DROP = "ALTER TABLE terminology_searchterm DROP COLUMN IF EXISTS search_vector"  # and its index
_INDEX = """
    CREATE INDEX terminology_searchterm_vector_gin ON terminology_searchterm
    USING gin (search_vector)
"""
POSTGRESQL_FORWARD = [
    _DROP,
    "ALTER TABLE terminology_searchterm ADD COLUMN search_vector tsvector",
    # Must build what `terminology.indexing.search_vector` builds (prefixes of 1 to 6 = n < 7).
    """
    UPDATE terminology_searchterm SET search_vector = (
        SELECT array_to_tsvector(array_agg(DISTINCT
            (key >> 59)::text || '~' || CASE WHEN n < 7 THEN left(word, n) ELSE word END
        ))
        FROM unnest(string_to_array(words, ' ')) AS word, generate_series(1, 7) AS n
        WHERE word <> ''
    )
    """,
    _INDEX,
]
POSTGRESQL_BACKWARD = [
    _DROP,
    """
    ALTER TABLE terminology_searchterm ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig, words)
        || array_to_tsvector(ARRAY['~' || (key >> 59)::text])
    ) STORED
    """,
    _INDEX,
]


def _run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("terminology", "0003_widen_search_indexes")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL_FORWARD}),
            _run({"postgresql": POSTGRESQL_BACKWARD}),
            elidable=False,
        )
    ]
