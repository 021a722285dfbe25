"""Operator actions on queued tasks, written to the admin log."""

from __future__ import annotations

from django.contrib.admin.models import DELETION
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from jobs.failures.services import in_batches, log_jobs
from jobs.models import Job, QueuedJob


def cancel_queued(*, queryset: QuerySet[Job], user: AbstractBaseUser | None = None) -> int:
    """Delete the rows of ``queryset`` still waiting in state queued; return how many.

    Running and retrying rows are left alone: a worker holds a running task, and a
    retrying one is a failed task (discard it from the Failed tasks page). The queued
    rows are locked before the delete: the broker claims with ``SKIP LOCKED``, so a
    row is either cancelled or claimed, never counted as cancelled and run.
    """
    cancelled = 0
    for batch in in_batches(queryset, states=(Job.State.QUEUED,)):
        with transaction.atomic():
            rows = Job.objects.filter(id__in=[job.id for job in batch], state=Job.State.QUEUED)
            gone = set(rows.select_for_update().values_list("id", flat=True))
            rows.filter(id__in=gone).delete()
            log_jobs(
                user=user,
                jobs=[job for job in batch if job.id in gone],
                flag=DELETION,
                message="Cancelled before it ran.",
                model=QueuedJob,
            )
        cancelled += len(gone)
    return cancelled
