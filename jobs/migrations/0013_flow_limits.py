"""Flow control: the limits a claim enforces, stored on the row at enqueue; the rate
windows' starts; the claim index split into rows without and with a limit."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0012_drop_taskcounter'),
    ]

    operations = [
        migrations.CreateModel(
            name='RateStart',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('key', models.CharField(max_length=255)),
                ('started_at', models.DateTimeField(help_text='its claim, then its start once it starts')),
                ('job', models.BigIntegerField(blank=True, help_text="the task's Job row id", null=True)),
            ],
        ),
        migrations.AddField(
            model_name='job',
            name='limit_key',
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='limit_max',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='rate_key',
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='rate_max',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='rate_seconds',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(models.F('queue'), models.OrderBy(models.F('priority'), descending=True), models.F('run_at'), models.F('id'), condition=models.Q(('limit_key__isnull', True), ('rate_key__isnull', True), ('state__in', ['queued', 'retrying'])), name='jobs_job_claim_free_idx'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(models.F('queue'), models.OrderBy(models.F('priority'), descending=True), models.F('run_at'), models.F('id'), condition=models.Q(('state__in', ['queued', 'retrying']), models.Q(('limit_key__isnull', False), ('rate_key__isnull', False), _connector='OR')), name='jobs_job_claim_limited_idx'),
        ),
        migrations.RemoveIndex(
            model_name='job',
            name='jobs_job_claim_ready_idx',
        ),
        migrations.AddField(
            model_name='workernode',
            name='workers',
            field=models.PositiveSmallIntegerField(default=1, help_text='worker processes that claim for it (bounds concurrent claims)'),
        ),
        migrations.AddIndex(
            model_name='ratestart',
            index=models.Index(fields=['key', 'started_at'], name='jobs_ratestart_key_idx'),
        ),
        migrations.AddIndex(
            model_name='ratestart',
            index=models.Index(fields=['started_at'], name='jobs_ratestart_at_idx'),
        ),
        migrations.AddIndex(
            model_name='ratestart',
            index=models.Index(fields=['job'], name='jobs_ratestart_job_idx'),
        ),
    ]


# What the claim with limits counts, read after its locks are granted: a VOLATILE
# function takes a new snapshot for each query (jobs.engine.transitions.claim_limited).
FLOW_USAGE = """
CREATE OR REPLACE FUNCTION jobs_flow_usage(
    limit_keys text[], rate_keys text[], windows float8[], queue_key text, after_lock bigint
) RETURNS TABLE (kind text, flow_key text, n bigint, oldest timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    IF cardinality(limit_keys) > 0 THEN
        RETURN QUERY
        SELECT 'c'::text, j.limit_key::text, count(*), NULL::timestamptz FROM jobs_job AS j
        WHERE j.state = 'running' AND j.limit_key = ANY(limit_keys) GROUP BY j.limit_key;
    END IF;
    IF cardinality(rate_keys) > 0 THEN
        DELETE FROM jobs_ratestart AS s USING unnest(rate_keys, windows) AS w(k, seconds)
        WHERE s.key = w.k
          AND s.started_at <= clock_timestamp() - make_interval(secs => w.seconds);
        RETURN QUERY
        SELECT 'r'::text, w.k, count(*), min(s.started_at)
        FROM unnest(rate_keys, windows) AS w(k, seconds)
        JOIN jobs_ratestart AS s
          ON s.key = w.k AND s.started_at > clock_timestamp() - make_interval(secs => w.seconds)
        GROUP BY w.k;
    END IF;
    IF cardinality(limit_keys) > 0 THEN
        -- The worker processes that may claim at once (only a live node claims).
        RETURN QUERY
        SELECT 'k'::text, ''::text, coalesce(sum(w.workers), 0)::bigint, NULL::timestamptz
        FROM jobs_workernode AS w WHERE w.dead_at IS NULL AND w.stopped_at IS NULL;
    END IF;
    IF queue_key IS NOT NULL THEN
        RETURN QUERY
        SELECT 'q'::text, queue_key, count(*), NULL::timestamptz FROM jobs_job AS j
        WHERE j.state = 'running' AND j.queue = substr(queue_key, 7);
    END IF;
END
$$
"""


def create_flow_usage(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FLOW_USAGE)


def drop_flow_usage(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS jobs_flow_usage(text[], text[], float8[], text, bigint)"
        )


Migration.operations.append(migrations.RunPython(create_flow_usage, drop_flow_usage))
