"""Whether a worker's queue is paused, as the worker sees it (``jobs.pauses`` sets it).

The pause is a ``QueuePause`` row. ``Worker.claim`` asks ``held`` before each claim;
the answer is cached on the worker for ``CHECK_SECONDS``, so a pause takes effect
within about that long and costs a worker at most a couple of reads a second.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from django.db import DEFAULT_DB_ALIAS

from jobs.models import QueuePause

logger = structlog.stdlib.get_logger("jobs.engine.paused")

# A worker re-reads its queue's pause at most this often.
CHECK_SECONDS = 0.5


def is_paused(queue: str, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    return QueuePause.objects.using(using).filter(queue=queue).exists()


def held(broker: Any) -> bool:
    """True while ``broker``'s queue is paused; read at most every ``CHECK_SECONDS``.

    ``broker`` is anything with ``queue`` and ``connection`` (a ``Worker``); the last
    answer is kept on it.
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
