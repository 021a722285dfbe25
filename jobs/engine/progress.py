"""Progress reports from a long job, shown to operators while it runs (/healthz, admin)."""

from __future__ import annotations

from django.utils import timezone

from jobs.engine import context
from jobs.models import Job


def report_progress(*, done: int, total: int | None = None, message: str = "") -> bool:
    """Record how far the running task is. Returns False outside a worker task."""
    run = context.running()
    if run is None or run.task_id is None:
        return False
    Job.objects.filter(task_id=run.task_id).update(
        progress_done=done,
        progress_total=total,
        progress_message=message[:255],
        progress_updated_at=timezone.now(),
    )
    return True
