"""The worker's own jobs."""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django_q.conf import Conf
from django_q.signals import post_spawn

from jobs import health
from jobs.engine import backend, context, results, stats
from jobs.engine.registry import Every, enqueue, job

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
    schedule=Every("heartbeat", minutes=lambda: health.heartbeat_interval_seconds() // 60),
)
def heartbeat() -> None:
    """Prove that a worker of this cluster takes tasks: log it and record it."""
    run = context.current_run()
    beat = health.heartbeat_record(
        cluster=run.cluster, host=run.host, pid=run.pid, task_id=run.task_id
    )
    stats.sample_queue(queue=run.cluster)
    stats.prune()
    backend.prune_rate_starts()
    logger.info(
        "worker heartbeat",
        task_id=run.task_id,
        attempt=run.attempt,
        cluster=beat.cluster,
        host=beat.host,
        pid=beat.pid,
    )


@job(
    "jobs.vacuum_queue",
    timeout=600,
    max_attempts=1,
    unique=lambda: "jobs.vacuum_queue",
    schedule=Every("vacuum_queue", minutes=1),
)
def vacuum_queue() -> None:
    """Keep the queue table's size flat where autovacuum is off or lags (PostgreSQL)."""
    done = backend.vacuum(min_dead_rows=settings.JOBS_QUEUE_VACUUM_DEAD_ROWS)
    if done is not None:
        logger.info(
            "queue table vacuumed",
            dead_rows=done.dead_rows,
            live_rows=done.live_rows,
            seconds=round(done.seconds, 3),
        )


@job(
    "jobs.prune_results",
    timeout=600,
    max_attempts=3,
    unique=lambda: "jobs.prune_results",
    schedule=Every("prune_results", minutes=10),
)
def prune_results() -> None:
    """Keep task results within JOBS_RESULTS_MAX_ROWS and JOBS_RESULTS_MAX_AGE_HOURS."""
    results.prune()


def on_post_spawn(sender: Any = None, proc_name: str = "", **_: Any) -> None:
    """A worker process started: ask for a heartbeat now.

    The heartbeat schedule alone would leave a fresh worker looking dead until its
    next tick. Every worker of the pool asks; the heartbeat's unique key turns all
    but the first into no-ops. django-q2's sync mode sends this signal too, outside
    any worker node: nothing is asked there.
    """
    if Conf.SYNC or context.current_node_id() is None:
        return
    try:
        task_id = enqueue("jobs.heartbeat", on_commit=False)
    except Exception:
        # A worker must start even when its database is away; the schedule beats later.
        logger.exception("start-up heartbeat not enqueued", proc_name=proc_name)
        return
    logger.info("worker started", proc_name=proc_name, heartbeat_task_id=task_id)


def connect_signals() -> None:
    post_spawn.connect(on_post_spawn, dispatch_uid="jobs.tasks.post_spawn")
