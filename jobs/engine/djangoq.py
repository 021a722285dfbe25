"""The django-q2 internals the project relies on, in one place.

django-q2 has no extension point for how the monitor saves a result: its
``monitor`` loop calls the module-level ``django_q.monitor.save_task`` for every
finished task (``save_cached`` calls it too, for a finished ``async_iter``).
``install()`` replaces that function with ``save_task`` below, so that a task of
the database broker is finished in a batch with its acknowledgement
(``jobs.engine.results``). ``run_sync`` is django-q2's own ``sync=True`` path, which
``async_task`` takes and the registry's ``enqueue`` must take the same way.
``tests/jobs/test_djangoq.py`` fails when django-q2 changes what this relies on.
"""

from __future__ import annotations

from typing import Any

import django_q.monitor
from django_q.brokers import Broker
from django_q.tasks import _sync

from jobs.engine import results


def save_task(task: dict[str, Any], broker: Broker) -> None:
    """django-q2's ``save_task``, for the monitor of a cluster on any broker."""
    try:
        if task.get(results.COMPLETED_IN_WORKER):
            results.announce(task)  # written in the task's own transaction
            return
        ack = task.get("ack_id")
        keep_result = getattr(broker, "keep_result", None)
        if keep_result is not None and isinstance(ack, tuple | list) and len(ack) == 2:
            # The database broker: a success is finished with its acknowledgement,
            # a failure by the failure hook (retry, or a final result once dead).
            if task.get("success"):
                keep_result((int(ack[0]), int(ack[1])), task)
            return
        if task.get("success") and not results.keeps(task) and not task.get("chain"):
            return
        results.save_finished([task], broker)
    except Exception:
        # As django-q2's own: the monitor must go on with the next task.
        django_q.monitor.logger.exception("Could not save task result")


def run_sync(payload: str) -> str:
    """Run a signed task package now, in this process, as ``async_task(sync=True)`` does."""
    return str(_sync(payload))


def install() -> None:
    """Route the monitor's result saving through ``save_task`` (idempotent)."""
    django_q.monitor.save_task = save_task
