"""The ``jobs.Job`` table's side of handing tasks out again (``DatabaseBackend`` calls it).

A task of a dead node or a dead worker process gets one ``WorkerLost`` attempt and
is ready to claim again, or dead if that was its last attempt. A claimed task that
never started goes back with no attempt used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from jobs.engine.attempts import WorkerInfo, record_failure
from jobs.engine.channels import notify
from jobs.engine.context import AckId
from jobs.models import Job, JobAttempt

# What handing a row out again needs to read.
RESCUE_FIELDS = ("id", "task_id", "attempt", "max_attempts", "func", "job_name", "queue")


def hand_out_lost_rows(node_id: int, acks: Sequence[AckId], *, alias: str) -> int:
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(_attempts(acks), owner=node_id, state=Job.State.RUNNING)
            .only(*RESCUE_FIELDS)
        )
        hand_out_again(rows, reason="the worker process running this attempt died", alias=alias)
    return len(rows)


def hand_back_rows(node_id: int, ack_ids: Sequence[AckId], *, alias: str) -> int:
    with transaction.atomic(using=alias):
        rows = Job.objects.using(alias).filter(
            _attempts(ack_ids), owner=node_id, state=Job.State.RUNNING
        )
        queues = set(rows.values_list("queue", flat=True))
        count = rows.update(
            state=_ready_state(),
            attempt=F("attempt") - 1,
            owner=None,
            claimed_at=None,
            claimed_by="",
        )
        notify(alias, queues)
    return count


def _attempts(acks: Sequence[AckId]) -> Q:
    """The rows at exactly these (id, attempt) pairs."""
    q = Q(pk__in=[])
    for row_id, attempt in acks:
        q |= Q(id=row_id, attempt=attempt)
    return q


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
    """Record the lost attempt of each row and make it ready (or dead at its last attempt)."""
    rows = list(rows)
    if not rows:
        return
    now = timezone.now()
    last = [r for r in rows if lost_attempt_is_last(r)]
    again = [r for r in rows if r not in last]
    for job in last:
        record_lost_last_attempt(job, reason=reason, now=now)
    if again:
        record_lost_attempts(again, reason=reason, alias=alias, now=now)
        Job.objects.using(alias).filter(id__in=[job.id for job in again]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by=""
        )
        notify(alias, {job.queue for job in again})
