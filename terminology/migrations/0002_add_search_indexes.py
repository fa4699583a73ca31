"""The full-text index over SearchTerm.words, for the database in use.

SQLite: an external-content FTS5 table whose rowid is SearchTerm.key, with prefix indexes for
2-, 3- and 4-character prefixes (the short prefixes people type first). Deletes and updates of
SearchTerm reach it through triggers, so whoever deletes (a cascade, a test flush) keeps it
right; inserts are written by `terminology.indexing` itself, in key order, because a per-row
insert trigger made a 100 k-term import three times slower (FTS5 flushes its pending
doclists whenever rowids arrive out of order).
PostgreSQL: a GIN index on to_tsvector('simple', words); the words are already normalised in
Python, so no extension (unaccent, pg_trgm) is needed and no superuser either.
"""

from __future__ import annotations

from django.db import migrations

SQLITE_FORWARD = [
    """
    CREATE VIRTUAL TABLE terminology_searchterm_fts USING fts5(
        words,
        content='terminology_searchterm',
        content_rowid='key',
        tokenize='unicode61 remove_diacritics 0',
        prefix='2 3 4',
        detail='none'
    )
    """,
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
    # Rows written before this migration (none in practice) join the index.
    "INSERT INTO terminology_searchterm_fts(terminology_searchterm_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS terminology_searchterm_au",
    "DROP TRIGGER IF EXISTS terminology_searchterm_ad",
    "DROP TABLE IF EXISTS terminology_searchterm_fts",
]
POSTGRESQL_FORWARD = [
    """
    CREATE INDEX terminology_searchterm_words_gin ON terminology_searchterm
    USING gin (to_tsvector('simple'::regconfig, words))
    """,
]
POSTGRESQL_BACKWARD = ["DROP INDEX IF EXISTS terminology_searchterm_words_gin"]


def _run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("terminology", "0001_add_concepts")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRESQL_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRESQL_BACKWARD}),
            elidable=False,
        )
    ]
