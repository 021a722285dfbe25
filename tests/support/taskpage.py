"""Helpers for the task page and task search tests: a job with a secret argument and
tasks in every state, written as the engine writes them (``job_row_from_task``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django_q.signing import SignedPackage

from jobs.engine.registry import job
from jobs.engine.rows import job_row_from_task
from jobs.models import Job, JobAttempt, WorkerNode


@job("tests.charge_card", max_attempts=4)
def charge_card(customer_id: int, token: str, options: dict[str, Any] | None = None) -> None:
    raise RuntimeError(f"card of customer {customer_id} declined")


CHARGE = "tests.support.taskpage.charge_card"


def package(func: str = CHARGE, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "name": f"task-{uuid.uuid4().hex[:8]}",
        "func": func,
        "args": args,
        "kwargs": kwargs,
    }


def task_row(
    *args: Any,
    func: str = CHARGE,
    queue: str = "tablo",
    state: str = Job.State.QUEUED,
    created_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Job:
    """A saved queue row for a call of ``func`` (its package signed, its text built)."""
    task = {**package(func, *args, **kwargs), **(extra or {})}
    row = job_row_from_task(task, queue=queue, payload=SignedPackage.dumps(task))
    row.state = state
    if created_at is not None:
        row.created_at = created_at
    row.save()
    return row


def fail(
    row: Job,
    *,
    attempt: int,
    message: str,
    host: str = "w1",
    pid: int = 11,
    at: datetime | None = None,
) -> JobAttempt:
    """Record a failed attempt on ``row`` ending ``at`` (default now), as the failure
    hook does (summary and history)."""
    now = at or timezone.now()
    row.attempt = attempt
    row.first_failed_at = row.first_failed_at or now
    row.last_failed_at = now
    row.last_error_type = "RuntimeError"
    row.last_error_message = message
    row.save()
    return JobAttempt.objects.create(
        task_id=row.task_id,
        attempt=attempt,
        func=row.func,
        job_name=row.job_name,
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        error_type="RuntimeError",
        error_message=message,
        traceback=(
            f'Traceback (most recent call last):\n  File "card.py", line 9\nRuntimeError: {message}'
        ),
        cluster="tablo",
        host=host,
        pid=pid,
    )


def node(*, host: str = "w1", pid: int = 11, cluster: str = "tablo") -> WorkerNode:
    return WorkerNode.objects.create(
        cluster=cluster,
        host=host,
        pid=pid,
        started_at=timezone.now() - timedelta(hours=1),
        last_beat_at=timezone.now(),
    )


def run_on(row: Job, worker: WorkerNode, **progress: Any) -> Job:
    """``row`` claimed and started by ``worker``, with optional progress fields."""
    now = timezone.now()
    row.state = Job.State.RUNNING
    row.owner = worker.id
    row.claimed_at = now - timedelta(seconds=5)
    row.claimed_by = f"{worker.host}:{worker.pid}:worker-1"
    row.started_at = now - timedelta(seconds=4)
    row.attempt += 1
    for name, value in progress.items():
        setattr(row, name, value)
    row.save()
    return row
