"""``jobs.prune_history``: the retention of the attempt history.

Imported by ``jobs.apps`` (the registry autodiscovers ``<app>.tasks`` only).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from jobs.engine.registry import Every, job
from jobs.models import Job, JobAttempt

BATCH = 10_000


def prune_history(*, older_than_days: int | None = None) -> int:
    """Delete attempts finished before the retention window; return how many.

    Attempts of tasks that still have a queue row (dead ones above all, and
    those still retrying) are kept: the operator needs them until the task
    is discarded or finishes.
    """
    days = settings.JOBS_HISTORY_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    old = JobAttempt.objects.filter(finished_at__lt=cutoff).exclude(
        task_id__in=Job.objects.values("task_id")
    )
    deleted = 0
    while True:
        ids = list(old.values_list("id", flat=True)[:BATCH])
        if not ids:
            return deleted
        deleted += JobAttempt.objects.filter(id__in=ids).delete()[0]


@job(
    "jobs.prune_history",
    timeout=600,
    max_attempts=3,
    unique=lambda: "jobs.prune_history",
    # Daily at a quiet hour (UTC), not 24 h after whenever the last run happened.
    schedule=Every("prune_history", cron="30 3 * * *"),
)
def prune_history_job() -> None:
    prune_history()
