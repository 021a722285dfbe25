"""Operator actions on tasks that have not ended: cancel, written to the admin log."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.admin.models import CHANGE
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from jobs import audit
from jobs.engine import backend
from jobs.failures.services import in_batches, log_operator_action
from jobs.models import Job, QueuedJob

# The longest grace an operator may give a running task (a day).
MAX_GRACE = 86_400


def parse_grace(value: str) -> int:
    """A grace in whole seconds, 0 to ``MAX_GRACE`` (ValueError otherwise)."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) > MAX_GRACE:
        raise ValueError(f"the grace must be whole seconds from 0 to {MAX_GRACE} (got {value!r})")
    return int(text)


def cancel_summary(done: Cancelled, *, grace: int) -> str:
    """What a cancel did, in one sentence (the admin's message, the command's last line)."""
    ended = len(done.cancelled)
    asked = len(done.requested)
    text = f"Cancelled {ended} task{'s' if ended != 1 else ''}"
    if asked:
        text += (
            f"; asked {asked} running task{'s' if asked != 1 else ''} to stop "
            f"(stopped by force after {grace} s)"
        )
    return text + "."


@dataclass
class Cancelled:
    """What a cancel changed: ids ended now, and running ids asked to stop."""

    cancelled: list[int] = field(default_factory=list)
    requested: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.cancelled) + len(self.requested)


def cancel_jobs(
    *,
    queryset: QuerySet[Job],
    user: AbstractBaseUser | None = None,
    grace: int | None = None,
) -> Cancelled:
    """Cancel the tasks of ``queryset`` that have not ended.

    Queued and retrying ones end ``cancelled`` at once; running ones are asked to stop
    (``cancel_requested()``) and their worker process is killed after ``grace`` seconds
    (default ``JOBS_CANCEL_GRACE_SECONDS``) if they have not stopped. Ended tasks are
    left alone. Each change is an admin ``LogEntry`` and one ``tasks cancelled`` log line.
    """
    by = audit.operator(user)
    done = Cancelled()
    for batch in in_batches(queryset, Job.ACTIVE_STATES):
        with transaction.atomic():
            outcome = backend.cancel(row_ids=[job.id for job in batch], by=by, grace=grace)
            ended, asked = set(outcome.cancelled), set(outcome.requested)
            audit.log_actions(
                user=user,
                model=QueuedJob,
                objects=[(str(job.pk), str(job)) for job in batch if job.id in ended],
                flag=CHANGE,
                message="Cancelled.",
            )
            audit.log_actions(
                user=user,
                model=QueuedJob,
                objects=[(str(job.pk), str(job)) for job in batch if job.id in asked],
                flag=CHANGE,
                message="Cancel requested: the running task was asked to stop.",
            )
        done.cancelled += outcome.cancelled
        done.requested += outcome.requested
    log_operator_action(
        "tasks cancelled",
        user=user,
        ids=sorted(done.cancelled + done.requested),
        cancelled=len(done.cancelled),
        stop_requested=len(done.requested),
    )
    return done
