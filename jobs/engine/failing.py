"""A failed attempt: retry or dead, written down, and one ``task failed`` log event.

The decision is made from the exception object itself: ``DoNotRetry`` (or a
subclass), a missing function and the last allowed attempt make the task dead;
anything else waits for its backoff. ``transitions.fail`` writes it only
while this node still owns that attempt. This is the project-wide failure hook:
every failure of every job passes here, and nowhere else logs one.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from django.utils import timezone

from jobs.engine import backoff, specs
from jobs.engine.execute import Outcome
from jobs.engine.funcs import func_path
from jobs.engine.transitions import Claimed, WorkerInfo, fail
from jobs.models import Job

logger = structlog.get_logger("jobs.failures")


def decide(outcome: Outcome, *, attempt: int, max_attempts: int) -> str:
    """Why this failure is final ("" when the task will be retried)."""
    if outcome.final:
        return outcome.final
    if max_attempts and attempt >= max_attempts:
        return "max attempts reached"
    return ""


def record(
    task: dict[str, Any],
    outcome: Outcome,
    *,
    row_id: int,
    max_attempts: int,
    owner: int | None,
) -> dict[str, Any]:
    """Record the failed attempt of the task package ``task``; returns the logged fields."""
    attempt = int(task.get("attempt") or 1)
    func = func_path(task.get("func"))
    spec = specs.for_func(func)
    if task.get("ack_failure"):
        max_attempts = 1  # django-q2's ack_failure: one attempt, recorded once
    gave_up = decide(outcome, attempt=attempt, max_attempts=max_attempts)
    # From the end of the attempt: a slow write does not stretch the delay.
    retry_at = backoff.retry_at(attempt, spec=spec, now=outcome.stopped) if not gave_up else None
    worker = task.get("worker") or {}
    current = fail(
        task_id=str(task.get("id") or ""),
        attempt=attempt,
        error_type=outcome.error_type,
        error_message=outcome.message,
        traceback=outcome.traceback,
        started_at=outcome.started_at,
        finished_at=outcome.stopped,
        retry_at=retry_at,
        worker=WorkerInfo(
            cluster=str(worker.get("cluster") or ""),
            host=str(worker.get("host") or ""),
            pid=worker.get("pid") if isinstance(worker.get("pid"), int) else None,
        ),
        owner=owner,
    )
    fields = {
        "task_id": task.get("id"),
        "task_name": task.get("name"),
        "job": spec.name if spec is not None else func,
        "func": func,
        "attempt": attempt,
        "max_attempts": max_attempts,
        "will_retry": retry_at is not None and current,
        "retry_at": retry_at.isoformat() if retry_at is not None else None,
        "gave_up": gave_up or None,
        "stale": not current,
        "error_type": outcome.error_type,
        "error_message": outcome.message,
        "traceback": outcome.traceback,
    }
    if current:
        logger.error("task failed", **fields)
    else:
        # This node lost the task (declared dead, handed out again): nothing was
        # written, and the attempt that counts is the new owner's.
        logger.warning("failed attempt of a task this node no longer holds", **fields)
    return fields


def lost(job: Job, *, reason: str, owner: int) -> bool:
    """The started attempt ``job`` ended with its worker process (``reason``): a failed
    attempt like any other, retried by the job's backoff or dead at its last attempt."""
    spec = specs.for_func(job.func)
    gave_up = "max attempts reached" if job.max_attempts and job.attempt >= job.max_attempts else ""
    now = timezone.now()
    retry_at = backoff.retry_at(job.attempt, spec=spec, now=now) if not gave_up else None
    message = f"{reason}; the attempt did not finish"
    current = fail(
        task_id=job.task_id,
        attempt=job.attempt,
        error_type="WorkerLost",
        error_message=message,
        started_at=job.started_at,
        finished_at=now,
        retry_at=retry_at,
        worker=WorkerInfo(),
        owner=owner,
    )
    if current:
        logger.error(
            "task failed",
            task_id=job.task_id,
            job=job.job_name or job.func,
            func=job.func,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            will_retry=retry_at is not None,
            retry_at=retry_at.isoformat() if retry_at is not None else None,
            gave_up=gave_up or None,
            error_type="WorkerLost",
            error_message=message,
        )
    return current


def unreadable(claimed: Claimed, *, attempt: int, node: int, alias: str) -> None:
    """The payload cannot be read (bad signature, unpicklable): dead, never dropped."""
    job = Job.objects.using(alias).filter(id=claimed.row_id).only("task_id").first()
    if job is None:
        return
    with contextlib.suppress(Exception):
        logger.error("task payload unreadable", task_id=job.task_id, attempt=attempt)
    fail(
        task_id=job.task_id,
        attempt=attempt,
        error_type="UnreadablePayload",
        error_message=(
            "the queued payload could not be decoded (bad signature or unpicklable "
            "data): was SECRET_KEY or the cluster name changed since it was enqueued, "
            "or was the row edited? The task was not run."
        ),
        retry_at=None,
        worker=WorkerInfo(),
        owner=node,
    )
