"""Operator actions on failed tasks: retry and discard, written to the admin log."""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from typing import Any

import structlog
from django.conf import settings
from django.contrib.admin.models import CHANGE, DELETION
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from jobs import audit
from jobs.engine import backend
from jobs.engine.registry import spec_for
from jobs.failures.selectors import FAILED_STATES
from jobs.models import FailedJob, Job

logger = structlog.get_logger("jobs.failures")

BATCH = 1000
AUDIT_IDS = 100  # ids an audit line lists; the count is always exact


def _audit(event: str, *, user: AbstractBaseUser | None, ids: list[int], **fields: Any) -> None:
    """One log line per operator action, admin or command line: who, how many, which."""
    if not ids:
        return
    actor: dict[str, str | None]
    if user is not None:
        actor = {"user": user.get_username()}
    else:
        # A management command: the shell account is all we know of the operator.
        try:
            actor = {"user": None, "os_user": getpass.getuser()}
        except Exception:  # no passwd entry (some containers)
            actor = {"user": None, "os_user": None}
    logger.info(event, count=len(ids), job_ids=ids[:AUDIT_IDS], **actor, **fields)


def _budget(func: str) -> int:
    # spec_for imports the function's module if needed: a job declared outside
    # an app's tasks module keeps its own budget.
    spec = spec_for(func)
    return (spec.max_attempts if spec is not None else None) or settings.JOBS_DEFAULT_MAX_ATTEMPTS


def _log(
    *,
    user: AbstractBaseUser | None,
    jobs: list[Job],
    flag: int,
    message: str,
    model: type[Job] | None = None,
) -> None:
    """One admin entry per job, linked to ``model``'s page (default: Failed tasks)."""
    objects = [(str(job.pk), str(job)) for job in jobs]
    audit.log_actions(
        user=user, model=model or FailedJob, objects=objects, flag=flag, message=message
    )


def _in_batches(
    queryset: QuerySet[Job], states: tuple[str, ...] = FAILED_STATES
) -> Iterable[list[Job]]:
    """Rows of ``queryset`` in ``states`` (default: failed), a batch at a time, by id."""
    base = (
        queryset.filter(state__in=states)
        .order_by("id")
        .only("id", "task_id", "func", "job_name", "attempt")
    )
    last_id = 0
    while True:
        batch = list(base.filter(id__gt=last_id)[:BATCH])
        if not batch:
            return
        yield batch
        last_id = batch[-1].id


def retry_failed(*, queryset: QuerySet[Job], user: AbstractBaseUser | None = None) -> int:
    """Queue the failed tasks of ``queryset`` to run now; return how many.

    The task keeps its id, attempt counter and history; it gets a fresh budget
    (``max_attempts = attempt + the job's max attempts``). Running or queued
    rows are left alone: a retry never makes a task run twice.
    """
    changed: list[int] = []
    for batch in _in_batches(queryset):
        by_budget: dict[int, list[int]] = {}
        for job in batch:
            by_budget.setdefault(_budget(job.func), []).append(job.id)
        with transaction.atomic():
            done: list[int] = []
            for budget, ids in by_budget.items():
                done += backend.requeue_failed(row_ids=ids, budget=budget)
            done_set = set(done)
            _log(
                user=user,
                jobs=[job for job in batch if job.id in done_set],
                flag=CHANGE,
                message="Retried: queued to run now with a fresh attempt budget.",
            )
        changed += done
    _audit("failed tasks retried", user=user, ids=changed)
    return len(changed)


def delete_jobs(
    *,
    queryset: QuerySet[Job],
    states: tuple[str, ...],
    message: str,
    user: AbstractBaseUser | None = None,
    model: type[Job] | None = None,
) -> int:
    """Delete the rows of ``queryset`` in ``states``, logged for ``user``; return how many.

    The rows are locked before the delete: the broker claims with ``SKIP LOCKED``,
    so a row is either deleted or claimed, never counted as deleted and run.
    """
    deleted: list[int] = []
    for batch in _in_batches(queryset, states):
        with transaction.atomic():
            gone = backend.delete_waiting(row_ids=[job.id for job in batch], states=states)
            _log(
                user=user,
                jobs=[job for job in batch if job.id in gone],
                flag=DELETION,
                message=message,
                model=model,
            )
        deleted += sorted(gone)
    _audit("tasks deleted", user=user, ids=deleted, change_message=message)
    return len(deleted)


def discard_failed(*, queryset: QuerySet[Job], user: AbstractBaseUser | None = None) -> int:
    """Delete the failed tasks of ``queryset`` (their attempt history stays until pruned)."""
    return delete_jobs(queryset=queryset, states=FAILED_STATES, message="Discarded.", user=user)
