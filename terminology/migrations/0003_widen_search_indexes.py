"""Search indexes that answer two-word and common-prefix queries fast (benchmark B1).

SQLite: the FTS5 table is rebuilt with prefix indexes for 1 to 6 characters instead of 2 to 4.
Without a prefix index of the typed length, FTS5 merges the doclists of every word starting
with the prefix before it can intersect them: "blood count" took ~4 ms and the one-character
"2" of "type 2 diab" ~8 ms at 104 k LOINC rows; with them, both take well under 1 ms.

PostgreSQL: a stored `search_vector` column holds the words' tsvector plus one marker lexeme
for the key's partition and inactive bit ("~0" … "~7", never produced by `normalise`, which
keeps only letters and digits), with a GIN index on it. Storing it means no `to_tsvector` per
row at query time; the marker lets the GIN index itself keep only the searched partition, so a
common word of another partition costs nothing. The expression index of 0002 is dropped. No
extension is needed. How the two are used is explained in `terminology/search.py`.
"""

from __future__ import annotations

from django.db import migrations

FTS_TABLE = """
    CREATE VIRTUAL TABLE terminology_searchterm_fts USING fts5(
        words,
        content='terminology_searchterm',
        content_rowid='key',
        tokenize='unicode61 remove_diacritics 0',
        prefix='{prefix}',
        detail='none'
    )
"""
# The triggers of 0002, unchanged; they belong to the table, so they are dropped and made again.
FTS_TRIGGERS = [
    """
    CREATE TRIGGER terminology_searchterm_ad AFTER DELETE ON terminology_searchterm BEGIN
        INSERT INTO terminology_searchterm_fts(terminology_searchterm_fts, rowid, words)
        VALUES ('delete', old.key, old.words);
    END
    """,
    """
    CREATE TRIGGER terminology_searchterm_au AFTER UPDATE ON terminology_searchterm BEGIN
        INSERT INTO terminology_searchterm_fts(terminology_searchterm_fts, rowid, words)
        VALUES ('delete', old.key, old.words);
        INSERT INTO terminology_searchterm_fts(rowid, words) VALUES (new.key, new.words);
    END
    """,
    "INSERT INTO terminology_searchterm_fts(terminology_searchterm_fts) VALUES ('rebuild')",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS terminology_searchterm_au",
    "DROP TRIGGER IF EXISTS terminology_searchterm_ad",
    "DROP TABLE IF EXISTS terminology_searchterm_fts",
]
SQLITE_FORWARD = [*SQLITE_DROP, FTS_TABLE.format(prefix="1 2 3 4 5 6"), *FTS_TRIGGERS]
SQLITE_BACKWARD = [*SQLITE_DROP, FTS_TABLE.format(prefix="2 3 4"), *FTS_TRIGGERS]
POSTGRESQL_FORWARD = [
    """
    ALTER TABLE terminology_searchterm ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig, words)
        || array_to_tsvector(ARRAY['~' || (key >> 59)::text])
    ) STORED
    """,
    """
    CREATE INDEX terminology_searchterm_vector_gin ON terminology_searchterm
    USING gin (search_vector)
    """,
    "DROP INDEX IF EXISTS terminology_searchterm_words_gin",
]
POSTGRESQL_BACKWARD = [
    """
    CREATE INDEX terminology_searchterm_words_gin ON terminology_searchterm
    USING gin (to_tsvector('simple'::regconfig, words))
    """,
    "ALTER TABLE terminology_searchterm DROP COLUMN IF EXISTS search_vector",
]


def _run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("terminology", "0002_add_search_indexes")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRESQL_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRESQL_BACKWARD}),
            elidable=False,
        )
    ]
