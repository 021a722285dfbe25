"""Operator actions on queued tasks, written to the admin log."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from jobs.failures.services import delete_jobs
from jobs.models import Job, QueuedJob


def cancel_queued(*, queryset: QuerySet[Job], user: AbstractBaseUser | None = None) -> int:
    """Delete the rows of ``queryset`` still waiting in state queued; return how many.

    Running and retrying rows are left alone: a worker holds a running task, and a
    retrying one is a failed task (discard it from the Failed tasks page).
    """
    return delete_jobs(
        queryset=queryset,
        states=(Job.State.QUEUED,),
        message="Cancelled before it ran.",
        user=user,
        model=QueuedJob,
    )
