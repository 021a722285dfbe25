"""The worker's own jobs."""

from __future__ import annotations

import structlog

from jobs import health
from jobs.engine import counters, results, runtime, stats
from jobs.engine.registry import job

logger = structlog.stdlib.get_logger("jobs.tasks")

# One heartbeat waiting is enough: a start-up beat or a schedule tick that finds
# one queued or running is a no-op (on the jobs.Job broker).
HEARTBEAT_UNIQUE_KEY = "jobs.heartbeat"


@job(
    "jobs.heartbeat",
    timeout=30,
    max_attempts=3,
    priority=10,
    unique=lambda *args, **kwargs: HEARTBEAT_UNIQUE_KEY,
)
def heartbeat() -> None:
    """Prove that a worker of this cluster takes tasks: log it and record it."""
    run = runtime.current_run()
    counters.prune()
    beat = health.heartbeat_record(
        cluster=run.cluster, host=run.host, pid=run.pid, task_id=run.task_id
    )
    stats.sample_queue(queue=run.cluster)
    stats.prune()
    logger.info(
        "worker heartbeat",
        task_id=run.task_id,
        attempt=run.attempt,
        cluster=beat.cluster,
        host=beat.host,
        pid=beat.pid,
    )


@job("jobs.prune_results", timeout=600, max_attempts=3, unique=lambda: "jobs.prune_results")
def prune_results() -> None:
    """Keep task results within JOBS_RESULTS_MAX_ROWS and JOBS_RESULTS_MAX_AGE_HOURS."""
    results.prune()
