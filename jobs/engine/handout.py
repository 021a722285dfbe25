"""The ``jobs.Job`` table's side of handing tasks out again (``DatabaseBackend`` calls it).

A started task of a dead node or a dead worker process gets one ``WorkerLost``
attempt and is ready to claim again, or dead if that was its last attempt. A claimed
task that never started goes back as it was: no attempt used, nothing recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Case, Value, When
from django.utils import timezone

from jobs.engine.attempts import WorkerInfo, record_failure
from jobs.engine.channels import notify
from jobs.models import Job, JobAttempt

# What handing a row out again needs to read.
RESCUE_FIELDS = (
    "id", "task_id", "attempt", "max_attempts", "func", "job_name", "queue", "started_at",
)  # fmt: skip


def _ready_state() -> Case:
    """A ready row is ``retrying`` once it has failed (the Failed tasks page lists it)."""
    return Case(
        When(last_failed_at__isnull=True, then=Value(Job.State.QUEUED)),
        default=Value(Job.State.RETRYING),
    )


def take_running(node_id: int, *, alias: str) -> list[Job]:
    return list(
        Job.objects.using(alias)
        .select_for_update()
        .filter(owner=node_id, state=Job.State.RUNNING)
        .only(*RESCUE_FIELDS)
        .order_by("id")
    )


def lost_attempt_is_last(task: Any) -> bool:
    return bool(task.max_attempts) and task.attempt >= task.max_attempts


def record_lost_attempts(
    tasks: Iterable[Any], *, reason: str, alias: str, now: datetime | None = None
) -> None:
    """``WorkerLost`` history for tasks handed out again (not their last attempt).

    ``tasks``: anything with ``task_id``, ``attempt``, ``func`` and ``job_name``.
    """
    now = now or timezone.now()
    JobAttempt.objects.using(alias).bulk_create(
        [
            JobAttempt(
                task_id=task.task_id,
                attempt=task.attempt,
                func=task.func,
                job_name=task.job_name,
                succeeded=False,
                finished_at=now,
                error_type="WorkerLost",
                error_message=f"{reason}; the task was handed out again",
            )
            for task in tasks
        ]
    )


def record_lost_last_attempt(task: Any, *, reason: str, now: datetime | None = None) -> None:
    """A task lost at its last allowed attempt is dead (its ``Job`` row must exist)."""
    record_failure(
        task_id=task.task_id,
        attempt=task.attempt,
        error_type="WorkerLost",
        error_message=f"{reason}; attempt {task.attempt} was the last allowed",
        finished_at=now or timezone.now(),
        retry_at=None,
        worker=WorkerInfo(),
    )


def hand_out_again(rows: Iterable[Job], *, reason: str, alias: str) -> None:
    """Make each row ready again: a started one with its lost attempt recorded (dead at
    its last attempt), one that never started as it was before its claim."""
    rows = list(rows)
    if not rows:
        return
    now = timezone.now()
    started = [r for r in rows if r.started_at is not None]
    last = [r for r in started if lost_attempt_is_last(r)]
    again = [r for r in started if r not in last]
    unstarted = [r for r in rows if r.started_at is None]
    for job in last:
        record_lost_last_attempt(job, reason=reason, now=now)
    if again:
        record_lost_attempts(again, reason=reason, alias=alias, now=now)
        Job.objects.using(alias).filter(id__in=[job.id for job in again]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by="", started_at=None
        )
    if unstarted:
        Job.objects.using(alias).filter(id__in=[job.id for job in unstarted]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by=""
        )
    if again or unstarted:
        notify(alias, {job.queue for job in again + unstarted})
