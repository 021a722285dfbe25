"""The plain claim and the finish as PL/pgSQL functions, as the claim with limits is (0016).

Sent as statements, both were parsed and planned again at every call: planning the
claim cost more than running it, and each worker calls both for every batch. A
function's plans are kept by the server for the session, through any connection pooler.

- ``jobs_claim(...)``: ``jobs.engine.transitions.claim`` on PostgreSQL, the statement it
  sent before. Its UPDATE takes the locked rows by tuple id, a plan that does not depend
  on the statistics of the moment it was cached.
- ``jobs_finish(...)``: ``transitions.finish`` on PostgreSQL: delete the rows the worker
  still holds at the attempts it ran, insert django-q2's result rows of exactly those
  (arrays in ``jobs.engine.results.RESULT_COLUMNS`` order), and name once the queue of
  each limit key that was full. The rows are found through the primary key whatever
  the batch size (``id = ANY``).
"""

from django.db import migrations

CLAIM = """
CREATE OR REPLACE FUNCTION jobs_claim(
    p_queue text, p_now timestamptz, p_node bigint, p_by text, p_limit int
) RETURNS TABLE (
    task_row bigint, task_payload text, task_timeout int, task_max_attempts int,
    task_attempt int, task_priority smallint, task_run_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    WITH me AS (
        SELECT id FROM jobs_workernode
        WHERE id = p_node AND dead_at IS NULL AND stopped_at IS NULL
        FOR SHARE
    ), picked AS (
        SELECT ctid AS row_ctid FROM jobs_job
        WHERE queue = p_queue
          AND state IN ('queued', 'retrying')
          AND limit_key IS NULL AND rate_key IS NULL
          AND run_at <= p_now
          AND EXISTS (SELECT 1 FROM me)
        ORDER BY priority DESC, run_at, id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs_job AS j
    SET state = 'running', claimed_at = p_now, claimed_by = p_by,
        owner = p_node, started_at = NULL
    WHERE j.ctid = ANY (ARRAY(SELECT row_ctid FROM picked))
      AND set_config('synchronous_commit', 'off', true) IS NOT NULL
    RETURNING j.id, j.payload, j.timeout, j.max_attempts, j.attempt, j.priority, j.run_at;
END
$$
"""

FINISH = """
CREATE OR REPLACE FUNCTION jobs_finish(
    p_owner bigint, p_by text, p_rows bigint[], p_attempts int[],
    r_id text[], r_name text[], r_func text[], r_hook text[], r_args text[],
    r_kwargs text[], r_result text[], r_group text[], r_started timestamptz[],
    r_stopped timestamptz[], r_success boolean[], r_attempt_count int[], r_cluster text[],
    r_row bigint[], r_row_attempt int[]
) RETURNS TABLE (task_row bigint, task_attempt int, freed_queue text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    WITH done AS (
        DELETE FROM jobs_job AS j
        WHERE j.id = ANY (p_rows)
          AND j.attempt = p_attempts[array_position(p_rows, j.id)]
          AND j.owner IS NOT DISTINCT FROM p_owner
          AND (p_by IS NULL OR j.claimed_by = p_by)
          AND set_config('synchronous_commit', 'off', true) IS NOT NULL
        RETURNING j.id, j.attempt, j.limit_key, j.limit_max, j.queue
    ), saved AS (
        INSERT INTO django_q_task AS t (
            id, name, func, hook, args, kwargs, result, "group", started, stopped,
            success, attempt_count, cluster
        )
        SELECT r.id, r.name, r.func, r.hook, r.args, r.kwargs, r.result, r.grp, r.started,
               r.stopped, r.success, r.attempt_count, r.cluster
        FROM unnest(
            r_id, r_name, r_func, r_hook, r_args, r_kwargs, r_result, r_group, r_started,
            r_stopped, r_success, r_attempt_count, r_cluster, r_row, r_row_attempt
        ) AS r(id, name, func, hook, args, kwargs, result, grp, started, stopped, success,
               attempt_count, cluster, row_id, row_attempt)
        JOIN done ON done.id = r.row_id AND done.attempt = r.row_attempt
        ON CONFLICT (id) DO UPDATE SET
            stopped = excluded.stopped, result = excluded.result, success = excluded.success,
            attempt_count = excluded.attempt_count, cluster = excluded.cluster,
            started = excluded.started
        RETURNING 1
    )
    SELECT done.id, done.attempt, NULL::text FROM done
    UNION ALL
    -- Once per limit key of the batch that was at its limit: its queue, to wake.
    SELECT NULL::bigint, NULL::int, k.queue::text FROM (
        SELECT limit_key, queue, min(limit_max) AS most FROM done
        WHERE limit_key IS NOT NULL GROUP BY limit_key, queue
    ) AS k
    WHERE (
        SELECT count(*) FROM jobs_job AS running
        WHERE running.state = 'running' AND running.limit_key = k.limit_key
    ) >= k.most;
END
$$
"""

DROP = (
    "DROP FUNCTION IF EXISTS jobs_claim(text, timestamptz, bigint, text, int); "
    "DROP FUNCTION IF EXISTS jobs_finish(bigint, text, bigint[], int[], text[], text[], "
    "text[], text[], text[], text[], text[], text[], timestamptz[], timestamptz[], "
    "boolean[], int[], text[], bigint[], int[])"
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CLAIM)
        schema_editor.execute(FINISH)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0016_flow_claim"),
    ]

    operations = [migrations.RunPython(create, drop)]
