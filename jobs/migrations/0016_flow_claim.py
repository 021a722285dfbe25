"""Flow control's claim, faster and steadier at depth.

- ``jobs_job_running_limit_idx``: the running tasks of a limit key, which every claim with
  limits and every finish of a limited task count. Without it the planner scanned the
  table whenever its statistics lagged behind a burst of enqueued tasks.
- ``jobs_claim_limited(...)``: the claim with limits as a PL/pgSQL function running the
  one statement ``jobs.engine.transitions.claim_limited`` sent before. A function's
  plans are kept by the server for the session, through any connection pooler (no
  client-side prepared statement): sent as a statement it was planned again at every
  claim, which cost more than running it. Its UPDATE takes the locked rows by tuple id,
  a plan that does not depend on the statistics of the moment it was cached.

How its locks and counts work: docs/broker.md ("The claim with limits"), and the
docstring of ``transitions.claim_limited``.
"""

from django.db import migrations, models

CLAIM_LIMITED = """
CREATE OR REPLACE FUNCTION jobs_claim_limited(
    p_queue text, p_now timestamptz, p_node bigint, p_by text, p_batch int, p_scan int,
    p_share int, p_loose int, p_space int, p_queue_key text, p_queue_limit int
) RETURNS TABLE (
    task_row bigint, task_payload text, task_timeout int, task_max_attempts int,
    task_attempt int, task_priority smallint, task_run_at timestamptz, is_limited bool,
    is_rated bool, candidates bigint, retry_in float8
)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY

    WITH cand AS MATERIALIZED (
        SELECT id, limit_key, limit_max, rate_key, rate_max, rate_seconds, row_ctid,
               row_number() OVER (ORDER BY priority DESC, run_at, id) AS ord
        FROM (
            SELECT id, limit_key, limit_max, rate_key, rate_max, rate_seconds, ctid AS row_ctid, priority, run_at FROM jobs_job
            WHERE queue = p_queue AND state IN ('queued', 'retrying') AND run_at <= p_now AND (limit_key IS NOT NULL OR rate_key IS NOT NULL) AND (limit_key IS NULL OR limit_key NOT IN (SELECT limit_key FROM jobs_job WHERE state = 'running' AND limit_key IS NOT NULL GROUP BY limit_key HAVING count(*) >= max(limit_max)))
            ORDER BY priority DESC, run_at, id
            LIMIT p_scan
            FOR UPDATE SKIP LOCKED
        ) AS ready
    ), windows AS MATERIALIZED (
        SELECT rate_key AS key, max(rate_seconds) AS seconds, max(rate_max) AS most
        FROM cand WHERE rate_key IS NOT NULL GROUP BY rate_key
    ), pre AS MATERIALIZED (
        -- A first count, in the statement's own snapshot: a key whose limit stays out of
        -- reach even if every live worker process claimed LOOSE at once is taken
        -- under a shared lock, so that claimers of it do not queue behind each other.
        SELECT c.key,
               count(r.id) + p_loose::int * (
                   SELECT coalesce(sum(workers), 0) FROM jobs_workernode
                   WHERE dead_at IS NULL AND stopped_at IS NULL
               ) <= max(c.most) AS shared
        FROM (
            SELECT limit_key AS key, max(limit_max) AS most FROM cand
            WHERE limit_key IS NOT NULL GROUP BY limit_key
        ) AS c
        LEFT JOIN jobs_job AS r ON r.state = 'running' AND r.limit_key = c.key
        GROUP BY c.key
    ), locked AS MATERIALIZED (
        -- In hash order, so two claimers never wait on each other in a cycle.
        SELECT count(CASE WHEN o.shared THEN pg_advisory_xact_lock_shared(p_space::int, o.h)
                          ELSE pg_advisory_xact_lock(p_space::int, o.h) END) AS n
        FROM (
            SELECT hashtext(k.key) AS h, bool_and(k.shared) AS shared FROM (
                SELECT key, shared FROM pre
                UNION ALL SELECT rate_key, false FROM cand WHERE rate_key IS NOT NULL
                UNION ALL SELECT p_queue_key::text, false WHERE p_queue_key::text IS NOT NULL
            ) AS k
            GROUP BY 1 ORDER BY 1
        ) AS o
    ), usage AS MATERIALIZED (
        SELECT u.* FROM locked, LATERAL jobs_flow_usage(
            ARRAY(SELECT key FROM pre),
            ARRAY(SELECT key FROM windows ORDER BY key)::text[],
            ARRAY(SELECT seconds FROM windows ORDER BY key)::float8[],
            p_queue_key::text, locked.n
        ) AS u
    ), room AS MATERIALIZED (
        SELECT CASE WHEN p_queue_limit::int IS NULL THEN p_batch::int
                    ELSE LEAST(p_batch::int, (CASE WHEN (p_queue_limit::int - coalesce((SELECT n FROM usage WHERE kind = 'q'), 0)) <= 0 THEN 0 ELSE GREATEST(1, (p_queue_limit::int - coalesce((SELECT n FROM usage WHERE kind = 'q'), 0)) / p_share) END))
               END AS n
    ), allowed AS (
        SELECT c.row_ctid, c.ord FROM (
            SELECT cand.*,
                   row_number() OVER (PARTITION BY limit_key ORDER BY ord) AS limit_rank,
                   row_number() OVER (PARTITION BY rate_key ORDER BY ord) AS rate_rank
            FROM cand
        ) AS c
        LEFT JOIN usage AS running ON running.kind = 'c' AND running.flow_key = c.limit_key
        LEFT JOIN usage AS started ON started.kind = 'r' AND started.flow_key = c.rate_key
        LEFT JOIN pre ON pre.key = c.limit_key
        WHERE (c.limit_key IS NULL
               OR c.limit_rank <= CASE WHEN NOT pre.shared THEN (CASE WHEN (c.limit_max - coalesce(running.n, 0)) <= 0 THEN 0 ELSE GREATEST(1, (c.limit_max - coalesce(running.n, 0)) / p_share) END)
                                       WHEN coalesce(running.n, 0) + p_loose::int * (SELECT n FROM usage WHERE kind = 'k') <= c.limit_max THEN p_loose::int
                                       ELSE 0 END)
          AND (c.rate_key IS NULL
               OR c.rate_rank <= LEAST(1, c.rate_max - coalesce(started.n, 0)))
    ), chosen AS MATERIALIZED (
        SELECT row_ctid FROM allowed ORDER BY ord LIMIT (SELECT n FROM room)
    ), me AS (
        SELECT id FROM jobs_workernode
        WHERE id = p_node AND dead_at IS NULL AND stopped_at IS NULL
        FOR SHARE
    ), fill AS (
        SELECT ctid AS row_ctid FROM jobs_job
        WHERE queue = p_queue
          AND state IN ('queued', 'retrying')
          AND limit_key IS NULL AND rate_key IS NULL
          AND run_at <= p_now
          AND EXISTS (SELECT 1 FROM me)
        ORDER BY priority DESC, run_at, id
        LIMIT (SELECT n - (SELECT count(*) FROM chosen) FROM room)
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT row_ctid FROM chosen WHERE EXISTS (SELECT 1 FROM me)
        UNION ALL SELECT row_ctid FROM fill
    ), claimed AS (
        UPDATE jobs_job AS j
        SET state = 'running', claimed_at = p_now, claimed_by = p_by,
            owner = p_node, started_at = NULL
        -- The rows this statement locked, by tuple id: a join on id let the planner
        -- scan the whole table, a cost that grew with the queue.
        WHERE j.ctid = ANY (ARRAY(SELECT row_ctid FROM picked))
        RETURNING j.id, j.payload, j.timeout, j.max_attempts, j.attempt, j.priority,
                  j.run_at, j.limit_key, j.rate_key
    ), rated AS (
        INSERT INTO jobs_ratestart (key, started_at, job)
        SELECT rate_key, clock_timestamp(), id FROM claimed WHERE rate_key IS NOT NULL
    )
    SELECT id, payload, timeout, max_attempts, attempt, priority, run_at,
           limit_key IS NOT NULL OR rate_key IS NOT NULL, rate_key IS NOT NULL,
           NULL::bigint, NULL::float8
    FROM claimed
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, (SELECT count(*) FROM cand), (
        SELECT min(EXTRACT(EPOCH FROM u.oldest - clock_timestamp()) + w.seconds)
        FROM usage AS u JOIN windows AS w ON w.key = u.flow_key
        WHERE u.kind = 'r' AND u.n >= w.most
    )
    WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
;
END
$$
"""
DROP = (
    "DROP FUNCTION IF EXISTS jobs_claim_limited("
    "text, timestamptz, bigint, text, int, int, int, int, int, text, int)"
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CLAIM_LIMITED)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0015_search_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                models.F("limit_key"),
                condition=models.Q(("limit_key__isnull", False), ("state", "running")),
                name="jobs_job_running_limit_idx",
            ),
        ),
        migrations.RunPython(create, drop),
    ]
