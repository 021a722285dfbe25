"""A trigram index for the search of one's files by name (files.selectors.search).

PostgreSQL only, as tablos' 0003: ``original_name ILIKE '%term%'`` is answered
from the index; SQLite scans the owner's tablos' rows (files_tablo_created_idx).
"""

from django.db import migrations

INDEX = "files_name_trgm_idx"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON files_tablofile "
        "USING gin (UPPER(original_name) gin_trgm_ops)"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("files", "0002_web_indexes")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
