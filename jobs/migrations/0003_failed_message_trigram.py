"""A trigram index for the failed tasks search on PostgreSQL (no-op elsewhere).

The search (jobs.failures.lookups.LikeContains: ``last_error_message ILIKE``)
finds a rare substring among a million failures through this index instead of
a full scan. Not in the model state: it is PostgreSQL-only.
"""

from django.db import migrations

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS jobs_job_failed_msg_trgm ON jobs_job "
    "USING gin (last_error_message gin_trgm_ops) WHERE last_failed_at IS NOT NULL",
]
DROP = ["DROP INDEX IF EXISTS jobs_job_failed_msg_trgm"]


def run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_failedjob_proxy")]

    operations = [migrations.RunPython(run(CREATE), run(DROP))]
