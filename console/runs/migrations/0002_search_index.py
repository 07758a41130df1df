from django.db import migrations

# Self-contained: what this migration creates must not change when the
# search code does. runs_run_search is console.runs.search.FTS_TABLE.
SQLITE_CREATE = [
    "CREATE VIRTUAL TABLE runs_run_search USING fts5("
    "search_text, content='runs_run', content_rowid='id', tokenize='trigram')",
    "INSERT INTO runs_run_search(rowid, search_text) SELECT id, search_text FROM runs_run",
    "CREATE TRIGGER runs_run_search_ai AFTER INSERT ON runs_run BEGIN "
    "INSERT INTO runs_run_search(rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER runs_run_search_ad AFTER DELETE ON runs_run BEGIN "
    "INSERT INTO runs_run_search(runs_run_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER runs_run_search_au AFTER UPDATE OF search_text ON runs_run BEGIN "
    "INSERT INTO runs_run_search(runs_run_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO runs_run_search(rowid, search_text) VALUES (new.id, new.search_text); END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS runs_run_search_au",
    "DROP TRIGGER IF EXISTS runs_run_search_ad",
    "DROP TRIGGER IF EXISTS runs_run_search_ai",
    "DROP TABLE IF EXISTS runs_run_search",
]
POSTGRES_CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS run_search_trgm ON runs_run USING gin (search_text gin_trgm_ops)",
]
POSTGRES_DROP = ["DROP INDEX IF EXISTS run_search_trgm"]

STATEMENTS = {
    "sqlite": (SQLITE_CREATE, SQLITE_DROP),
    "postgresql": (POSTGRES_CREATE, POSTGRES_DROP),
}


def create_search_index(apps, schema_editor):
    create, _ = STATEMENTS.get(schema_editor.connection.vendor, ([], []))
    for statement in create:
        schema_editor.execute(statement)


def drop_search_index(apps, schema_editor):
    _, drop = STATEMENTS.get(schema_editor.connection.vendor, ([], []))
    for statement in drop:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    """The indexed substring search: pg_trgm on PostgreSQL, FTS5 trigram on SQLite."""

    dependencies = [("runs", "0001_initial")]

    operations = [migrations.RunPython(create_search_index, drop_search_index)]
