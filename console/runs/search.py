"""Indexed substring search over runs, one answer per database.

PostgreSQL: `search_text LIKE '%term%'` served by a pg_trgm GIN index.
SQLite: an FTS5 table with the trigram tokenizer mirrors `search_text`
(kept in step by triggers); LIKE on it uses the trigram index.
Both are created by migration 0002.
"""

from django.db import connections
from django.db.models import Q
from django.db.models.expressions import RawSQL

FTS_TABLE = "runs_run_search"


def like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_filter(db_alias: str, text: str) -> Q:
    text = text.strip()
    if not text:
        return Q()
    if connections[db_alias].vendor == "sqlite":
        return Q(
            id__in=RawSQL(
                f"SELECT rowid FROM {FTS_TABLE} WHERE search_text LIKE %s ESCAPE '\\'",  # noqa: S608
                [like_pattern(text)],
            )
        )
    # Django escapes % and _ for `contains`; search_text is stored lowercased.
    return Q(search_text__contains=text.lower())


SQLITE_CREATE = [
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5("
    "search_text, content='runs_run', content_rowid='id', tokenize='trigram')",
    f"INSERT INTO {FTS_TABLE}(rowid, search_text) SELECT id, search_text FROM runs_run",
    f"CREATE TRIGGER runs_run_search_ai AFTER INSERT ON runs_run BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END",
    f"CREATE TRIGGER runs_run_search_ad AFTER DELETE ON runs_run BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, search_text) "
    f"VALUES ('delete', old.id, old.search_text); END",
    f"CREATE TRIGGER runs_run_search_au AFTER UPDATE OF search_text ON runs_run BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, search_text) "
    f"VALUES ('delete', old.id, old.search_text); "
    f"INSERT INTO {FTS_TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS runs_run_search_au",
    "DROP TRIGGER IF EXISTS runs_run_search_ad",
    "DROP TRIGGER IF EXISTS runs_run_search_ai",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]
POSTGRES_CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS run_search_trgm ON runs_run USING gin (search_text gin_trgm_ops)",
]
POSTGRES_DROP = ["DROP INDEX IF EXISTS run_search_trgm"]


def _run_all(schema_editor, statements):
    for statement in statements:
        schema_editor.execute(statement)


def create_search_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run_all(schema_editor, SQLITE_CREATE)
    elif vendor == "postgresql":
        _run_all(schema_editor, POSTGRES_CREATE)


def drop_search_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run_all(schema_editor, SQLITE_DROP)
    elif vendor == "postgresql":
        _run_all(schema_editor, POSTGRES_DROP)
