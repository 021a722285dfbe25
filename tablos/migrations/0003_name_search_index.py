"""A trigram index for the search of one's tablos by name (files.selectors.search).

PostgreSQL only (pg_trgm, a trusted extension: the database owner may create it):
``name ILIKE '%term%'`` as Django writes it, ``UPPER(name::text) LIKE UPPER(...)``,
is then answered from the index. SQLite has no such index; there the search scans
the owner's rows only (tablos_owner_created_idx).
"""

from django.db import migrations

INDEX = "tablos_name_trgm_idx"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON tablos_tablo USING gin (UPPER(name) gin_trgm_ops)"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("tablos", "0002_web_indexes")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
