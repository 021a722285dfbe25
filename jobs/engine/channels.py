"""Waking the workers of a queue: PostgreSQL NOTIFY on one channel per queue.

Idle workers LISTEN on ``channel_name(queue)`` (``jobs.engine.listener``); whoever
makes a task of that queue ready (an enqueue, a retry, a hand-back, a rescue) calls
``notify``. The
notification is sent when the caller's transaction commits and dropped on
rollback. SQLite has no NOTIFY: its workers poll.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import connections


def channel_name(queue: str) -> str:
    """The NOTIFY channel of a queue (an identifier: at most 63 bytes)."""
    name = f"jobs_{queue}"
    if len(name.encode()) > 63:
        name = "jobs_" + hashlib.sha1(queue.encode(), usedforsecurity=False).hexdigest()
    return name


def cancel_channel(node: int) -> str:
    """The channel a node's supervisor LISTENs on for cancels of the tasks it runs (a
    hyphen, which no queue's ``jobs_`` channel has at that place)."""
    return f"jobs-cancel-{int(node)}"


# The payload of the NOTIFY a resume sends: a worker that gets it reads the pause again.
RESUMED = "resumed"
# The payload when a task with a limit is ready or freed its slot: a worker that gets it
# takes the limited path of the claim at once (jobs.engine.limits.Gate).
LIMITED = "limited"


def notify(alias: str, queues: Iterable[str], *, payload: str = "") -> None:
    """Wake the listeners of each queue (no-op on SQLite)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for queue in sorted(set(queues)):
            cursor.execute("SELECT pg_notify(%s, %s)", [channel_name(queue), payload])
