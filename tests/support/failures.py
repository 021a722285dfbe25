"""Helpers for the failures tests: registered test jobs, queue rows, monitor task dicts.

The jobs live here (not in a test module) so that a real ``qcluster`` can
import them by dotted path.
"""

from __future__ import annotations

import traceback
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django_q.models import Task
from django_q.signing import SignedPackage

from jobs.engine.errors import DoNotRetry
from jobs.engine.registry import job
from jobs.engine.rows import job_row_from_task
from jobs.models import Job, JobAttempt


class PaymentDeclined(DoNotRetry):
    """A final error declared by an app."""


@job("tests.always_fails", max_attempts=3)
def always_fails(label: str = "") -> None:
    raise RuntimeError(f"boom {label}".strip())


@job("tests.gives_up", max_attempts=5)
def gives_up() -> None:
    raise DoNotRetry("input is invalid, retrying cannot help")


@job("tests.custom_policy", max_attempts=2, backoff=lambda attempt: 7 * attempt)
def custom_policy() -> None:
    raise ValueError("custom")


@job("tests.succeeds")
def succeeds(value: int = 1) -> int:
    return value


def unregistered_failure() -> None:
    raise KeyError("missing")


def make_task(func: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A task package shaped like the one django_q.tasks.async_task builds."""
    return {
        "id": uuid.uuid4().hex,
        "name": f"test-{uuid.uuid4().hex[:8]}",
        "func": func,
        "args": args,
        "kwargs": kwargs,
        "started": timezone.now(),
    }


def queue_job(
    func: str, *args: Any, attempt: int = 1, state: str = Job.State.RUNNING, **kwargs: Any
) -> tuple[Job, dict[str, Any]]:
    """A saved Job row as the broker leaves it while the task runs, and its task dict."""
    task = make_task(func, *args, **kwargs)
    row = job_row_from_task(task, queue="default", payload=SignedPackage.dumps(task))
    row.state = state
    row.attempt = attempt
    row.save()
    return row, task


def failed_result(exc: BaseException) -> str:
    """The ``result`` text django-q2's worker stores for a raised exception."""
    try:
        raise exc
    except BaseException as raised:
        return f"{raised} : {traceback.format_exc()}"


def finished(task: dict[str, Any], *, exc: BaseException | None, attempt: int) -> dict[str, Any]:
    """The dict the monitor passes to ``post_execute`` after the worker ran the task."""
    done = dict(task)
    now = timezone.now()
    done.update(
        attempt=attempt,
        started_at=now - timedelta(seconds=1),
        stopped=now,
        worker={"cluster": "test-cluster", "host": "test-host", "pid": 4242},
        success=exc is None,
        result=None if exc is None else failed_result(exc),
    )
    return done


def failed_rows(
    count: int,
    *,
    func: str = "tests.support.failures.always_fails",
    state: str = Job.State.DEAD,
    error_type: str = "RuntimeError",
    message: str = "boom",
    failed_at: datetime | None = None,
    attempt: int = 3,
) -> list[Job]:
    """``count`` failed Job rows (with one attempt each in the history)."""
    failed_at = failed_at or timezone.now()
    rows = []
    for i in range(count):
        task = make_task(func, str(i))
        row = job_row_from_task(task, queue="default", payload=SignedPackage.dumps(task))
        row.state = state
        row.attempt = attempt
        row.first_failed_at = failed_at - timedelta(minutes=5)
        row.last_failed_at = failed_at - timedelta(seconds=i)
        row.last_error_type = error_type
        row.last_error_message = f"{message} {i}"
        row.error_signature = f"{error_type}: {message} #"
        rows.append(row)
    Job.objects.bulk_create(rows)
    JobAttempt.objects.bulk_create(
        JobAttempt(
            task_id=row.task_id,
            attempt=row.attempt,
            func=row.func,
            error_type=error_type,
            error_message=row.last_error_message,
            traceback=f"Traceback (most recent call last):\n  File x\n{error_type}: boom",
        )
        for row in rows
    )
    return list(Job.objects.filter(task_id__in=[r.task_id for r in rows]).order_by("id"))


def last_result(
    task_id: str,
    *,
    success: bool,
    name: str = "",
    func: str = "tests.support.failures.always_fails",
) -> Task:
    """The result row (django-q2 ``Task``) a finished run leaves: kept successes, final failures."""
    now = timezone.now()
    return Task.objects.create(
        id=task_id,
        name=name or f"run-{task_id[:8]}",
        func=func,
        started=now,
        stopped=now,
        success=success,
        result=1 if success else "boom",
    )
