from django.db import migrations

from console.runs.search import create_search_index, drop_search_index


class Migration(migrations.Migration):
    """The indexed substring search: pg_trgm on PostgreSQL, FTS5 trigram on SQLite."""

    dependencies = [("runs", "0001_initial")]

    operations = [migrations.RunPython(create_search_index, drop_search_index)]
