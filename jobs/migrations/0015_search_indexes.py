"""The task search (jobs.taskpage): the arguments as text, and the indexes its filters use.

``search_text`` is filled at enqueue from now on; tasks queued before this migration
are found by every filter but their arguments. The trigram index on it is
PostgreSQL-only (the error text already has one, migration 0003), so it is not in
the model state and the migration runs on SQLite too.
"""

from django.db import migrations, models

TRIGRAM = "jobs_job_search_text_trgm"


# Text columns searched by substring: statistics from a larger sample, so that the
# planner tells a term in 1% of the rows (walk the newest first) from a rare one (read
# the trigram index), instead of guessing ~100 rows for both.
STATISTICS = (
    "ALTER TABLE jobs_job ALTER COLUMN search_text SET STATISTICS {0}, "
    "ALTER COLUMN last_error_message SET STATISTICS {0}"
)


def create_trigram(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        # Partial: a queued row is indexed once, at its insert; the claim (to running),
        # the start mark and the delete of a success add nothing to it. Running tasks
        # are few and found through the state index.
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {TRIGRAM} ON jobs_job "
            "USING gin (search_text gin_trgm_ops) WHERE state <> 'running'"
        )
        schema_editor.execute(STATISTICS.format(1000))


def drop_trigram(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(STATISTICS.format(-1))
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM}")


class Migration(migrations.Migration):
    dependencies = [("jobs", "0014_flow_control")]

    operations = [
        migrations.CreateModel(
            name="Task",
            fields=[],
            options={
                "verbose_name": "task",
                "verbose_name_plural": "tasks",
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("jobs.job",),
        ),
        migrations.AddField(
            model_name="job",
            name="search_text",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["created_at"], name="jobs_job_created_idx"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["func", "created_at"], name="jobs_job_func_created_idx"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["queue", "created_at"], name="jobs_job_queue_created_idx"),
        ),
        migrations.AddIndex(
            model_name="jobattempt",
            index=models.Index(
                fields=["host", "pid", "finished_at", "task_id"],
                name="jobs_attempt_node_idx",
            ),
        ),
        migrations.RunPython(create_trigram, drop_trigram),
    ]
