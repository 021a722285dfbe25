"""Pausing a queue (a cluster name): its tasks stay queued, in order, until it is resumed.

The pause is a ``QueuePause`` row, so it holds across restarts and for every
node. ``DatabaseBroker.dequeue`` asks ``held`` before each claim; the answer is
cached in the broker for ``CHECK_SECONDS``, so a pause takes effect within about
that long and costs a pusher at most a couple of reads a second. Tasks already
claimed (running, or waiting in a cluster's local queue) finish. Schedules and
``async_task`` still enqueue into a paused queue. Resume sends the broker's
NOTIFY so that idle pushers claim at once.
"""

from __future__ import annotations

import getpass
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, transaction

from jobs import health, registry
from jobs.channels import notify
from jobs.models import Job, Overview, QueuePause, WorkerHeartbeat

logger = structlog.stdlib.get_logger("jobs.pauses")

# A pusher re-reads its queue's pause at most this often.
CHECK_SECONDS = 0.5
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
def is_paused(queue: str, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    return QueuePause.objects.using(using).filter(queue=queue).exists()


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


# --- services --------------------------------------------------------------------
def _who(user: AbstractBaseUser | None) -> str:
    if user is not None:
        return user.get_username()[:150]
    try:
        return f"{getpass.getuser()} (command line)"[:150]
    except Exception:  # no user name in this environment (a bare container)
        return "command line"


def _admin_log(*, user: AbstractBaseUser | None, queue: str, message: str) -> None:
    if user is None or user.pk is None:
        return
    LogEntry.objects.create(
        user_id=user.pk,
        content_type=ContentType.objects.get_for_model(Overview, for_concrete_model=False),
        object_id=queue,
        object_repr=queue,
        action_flag=CHANGE,
        change_message=message,
    )


def pause_queue(*, queue: str, user: AbstractBaseUser | None = None) -> PauseStatus:
    """Stop every node from claiming ``queue``'s tasks (within ``CHECK_SECONDS``)."""
    queue = check_queue_name(queue)
    if queue not in known_queues():
        known = ", ".join(known_queues()) or "none"
        raise QueueError(f"unknown queue {queue!r}; known queues: {known}.")
    who = _who(user)
    with transaction.atomic():
        pause, created = QueuePause.objects.get_or_create(queue=queue, defaults={"paused_by": who})
        if created:
            _admin_log(user=user, queue=queue, message="Paused the queue.")
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
    """Let ``queue``'s tasks be claimed again, and wake its idle pushers now."""
    queue = check_queue_name(queue)
    who = _who(user)
    with transaction.atomic():
        deleted, _ = QueuePause.objects.filter(queue=queue).delete()
        if not deleted and queue not in known_queues():
            known = ", ".join(known_queues()) or "none"
            raise QueueError(f"unknown queue {queue!r}; known queues: {known}.")
        if deleted:
            _admin_log(user=user, queue=queue, message="Resumed the queue.")
            notify(DEFAULT_DB_ALIAS, [queue])  # delivered at commit
    if deleted:
        logger.info("queue resumed", queue=queue, resumed_by=who)
    return PauseStatus(queue=queue, paused=False, changed=bool(deleted))


# --- the broker's side -----------------------------------------------------------
def held(broker: Any) -> bool:
    """True while ``broker``'s queue is paused; read at most every ``CHECK_SECONDS``.

    The last answer is kept on the broker instance (one per pusher process).
    """
    now = time.monotonic()
    checked: tuple[float, bool] | None = broker.__dict__.get("_pause_checked")
    if checked is None or now - checked[0] >= CHECK_SECONDS:
        checked = (now, is_paused(broker.queue, using=broker.connection))
        broker.__dict__["_pause_checked"] = checked
        was = broker.__dict__.get("_pause_seen", False)
        if checked[1] != was:
            broker.__dict__["_pause_seen"] = checked[1]
            event = "queue paused: claiming nothing" if checked[1] else "queue resumed: claiming"
            logger.info(event, queue=broker.queue)
    return checked[1]


def forget(broker: Any) -> None:
    """Make the next ``held`` read the database (after a wake-up: maybe a resume)."""
    broker.__dict__.pop("_pause_checked", None)
