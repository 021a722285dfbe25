"""Trigram indexes for the failed tasks search on PostgreSQL (no-op elsewhere).

The search (jobs.failures.selectors.search_failed: ``ILIKE`` on the error
message, name and function) finds a rare substring among a million failures
through a BitmapOr of these indexes instead of a full scan. Partial (failed
rows only), so a task that never fails costs them nothing. Not in the model
state: they are PostgreSQL-only.
"""

from django.db import migrations

INDEXES = {
    "jobs_job_failed_msg_trgm": "last_error_message",
    "jobs_job_failed_name_trgm": "name",
    "jobs_job_failed_func_trgm": "func",
}
CREATE = ["CREATE EXTENSION IF NOT EXISTS pg_trgm"] + [
    f"CREATE INDEX IF NOT EXISTS {name} ON jobs_job USING gin ({column} gin_trgm_ops) "
    "WHERE last_failed_at IS NOT NULL"
    for name, column in INDEXES.items()
]
DROP = [f"DROP INDEX IF EXISTS {name}" for name in INDEXES]


def run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_failedjob_proxy")]

    operations = [migrations.RunPython(run(CREATE), run(DROP))]
