"""Pausing a queue (a cluster name): its tasks stay queued, in order, until it is resumed.

The pause is a ``QueuePause`` row, so it holds across restarts and for every
node. Each worker asks ``jobs.engine.paused.held`` before each claim; the answer is
cached for ``CHECK_SECONDS``, so a pause takes effect within about that long and
costs a worker at most a couple of reads a second. Tasks already claimed (running,
or claimed in the worker's small batch) finish. Schedules and ``async_task`` still
enqueue into a paused queue. Resume sends the queue's NOTIFY so that idle workers
claim at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from django.contrib.admin.models import CHANGE
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, transaction

from jobs import audit, health
from jobs.engine import registry
from jobs.engine.channels import RESUMED, notify
from jobs.models import Job, Overview, QueuePause, WorkerHeartbeat

logger = structlog.stdlib.get_logger("jobs.pauses")

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class QueueError(ValueError):
    """A queue name that is malformed or that no node, job or row knows."""


@dataclass(frozen=True)
class PauseStatus:
    queue: str
    paused: bool
    changed: bool  # False: it already was in that state
    paused_at: datetime | None = None
    paused_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "paused": self.paused,
            "changed": self.changed,
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "paused_by": self.paused_by or None,
        }


# --- selectors -------------------------------------------------------------------
def paused_queues() -> list[QueuePause]:
    return list(QueuePause.objects.order_by("queue"))


def known_queues() -> list[str]:
    """Queues something points at: configured clusters, jobs declared for a cluster,
    nodes that beat, queues with waiting or running tasks, paused queues."""
    names = set(health.known_cluster_names())
    names.update(spec.cluster for spec in registry.all_jobs() if spec.cluster)
    names.update(WorkerHeartbeat.objects.values_list("cluster", flat=True))
    names.update(QueuePause.objects.values_list("queue", flat=True))
    # The claim index is partial on these states and starts with the queue.
    names.update(
        Job.objects.filter(state__in=Job.ACTIVE_STATES)
        .order_by()
        .values_list("queue", flat=True)
        .distinct()
    )
    return sorted(n for n in names if n)


def check_queue_name(queue: str) -> str:
    queue = (queue or "").strip()
    if not QUEUE_NAME.match(queue):
        raise QueueError(
            f"{queue!r} is not a queue name: use 1 to 100 letters, digits, '_', '.', ':' or '-'."
        )
    return queue


def pause_queue(*, queue: str, user: AbstractBaseUser | None = None) -> PauseStatus:
    """Stop every node from claiming ``queue``'s tasks (within ``CHECK_SECONDS``)."""
    queue = check_queue_name(queue)
    if queue not in known_queues():
        known = ", ".join(known_queues()) or "none"
        raise QueueError(f"unknown queue {queue!r}; known queues: {known}.")
    who = audit.operator(user)
    with transaction.atomic():
        pause, created = QueuePause.objects.get_or_create(queue=queue, defaults={"paused_by": who})
        if created:
            audit.log_actions(
                user=user,
                model=Overview,
                objects=[(queue, queue)],
                flag=CHANGE,
                message="Paused the queue.",
            )
    if created:
        logger.info("queue paused", queue=queue, paused_by=who)
    return PauseStatus(
        queue=queue,
        paused=True,
        changed=created,
        paused_at=pause.paused_at,
        paused_by=pause.paused_by,
    )


def resume_queue(*, queue: str, user: AbstractBaseUser | None = None) -> PauseStatus:
    """Let ``queue``'s tasks be claimed again, and wake its idle workers now."""
    queue = check_queue_name(queue)
    who = audit.operator(user)
    with transaction.atomic():
        deleted, _ = QueuePause.objects.filter(queue=queue).delete()
        if not deleted and queue not in known_queues():
            known = ", ".join(known_queues()) or "none"
            raise QueueError(f"unknown queue {queue!r}; known queues: {known}.")
        if deleted:
            audit.log_actions(
                user=user,
                model=Overview,
                objects=[(queue, queue)],
                flag=CHANGE,
                message="Resumed the queue.",
            )
            notify(DEFAULT_DB_ALIAS, [queue], payload=RESUMED)  # delivered at commit
    if deleted:
        logger.info("queue resumed", queue=queue, resumed_by=who)
    return PauseStatus(queue=queue, paused=False, changed=bool(deleted))
