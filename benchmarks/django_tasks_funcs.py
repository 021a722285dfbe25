"""Django ``@task`` functions the Tasks benchmark enqueues (imported by the workers it starts)."""

from __future__ import annotations

from django.tasks import task

from benchmarks import queue_tasks


@task
def noop() -> None:
    """Nothing: the queue path is all that is timed."""


@task
def stamp(enqueued_at: float, path: str) -> None:
    """Append 'enqueued_at started_at' to ``path`` (benchmarks.queue_tasks.stamp)."""
    queue_tasks.stamp(enqueued_at, path)
