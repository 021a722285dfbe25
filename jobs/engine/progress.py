"""Progress reports from a long job, shown to operators while it runs (/healthz, admin)."""

from __future__ import annotations

from jobs.engine import context, transitions


def report_progress(*, done: int, total: int | None = None, message: str = "") -> bool:
    """Record how far the running task is. Returns False outside a worker task."""
    run = context.running()
    if run is None or run.task_id is None:
        return False
    transitions.set_progress(task_id=run.task_id, done=done, total=total, message=message)
    return True
