"""``TaskResult`` from Tablo's rows, in any process.

A Django task is a ``jobs.Job`` row while it waits, runs, retries or is dead; once it
succeeds, the row is gone and django-q2's result row (``Task``, the Successful tasks
page) holds its outcome. Every failed attempt is a ``JobAttempt`` (with its traceback),
and so is the success that ends a retried task. So:

* row ``queued``/``retrying`` -> READY, ``running`` (claimed by a worker) -> RUNNING,
  ``dead`` -> FAILED;
* no row, a successful result -> SUCCESSFUL (its value is what the worker stored, see
  ``outcome``); a failed result (a dead task an operator discarded) -> FAILED;
* neither (never committed, or pruned by the result retention) -> TaskResultDoesNotExist.

The row is read before the result: a task finishes by deleting its row and writing its
result in one transaction, so one of the two is always there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils.module_loading import import_string
from django_q.models import Task as ResultRow
from django_q.signing import SignedPackage

from jobs.django_tasks.errors import exception_class_path
from jobs.models import Job, JobAttempt

if TYPE_CHECKING:
    from django.tasks.backends.base import BaseTaskBackend

# The package key holding what Django's TaskResult needs and the engine does not keep.
META = "django_task"
# The keys of a successful Django task's stored result (``outcome``).
RETURN_VALUE = "return_value"
WORKER_ID = "worker_id"
# The package key of the attempt's RUNNING result, in the worker process only.
RUNNING = "django_task_running"

_STATUS = {
    Job.State.QUEUED: TaskResultStatus.READY,
    Job.State.RETRYING: TaskResultStatus.READY,
    Job.State.RUNNING: TaskResultStatus.RUNNING,
    Job.State.DEAD: TaskResultStatus.FAILED,
}
_ATTEMPT_FIELDS = (
    "attempt", "succeeded", "started_at", "finished_at", "cluster", "host", "pid",
    "error_type", "error_message", "traceback",
)  # fmt: skip
_JOB_FIELDS = (
    "task_id", "func", "payload", "state", "attempt", "created_at", "claimed_at",
    "claimed_by", "started_at", "first_failed_at", "last_failed_at",
)  # fmt: skip


def worker_id(cluster: str, host: str, pid: int | None) -> str:
    """A worker process, as ``Job.claimed_by`` names it: ``cluster@host:pid``."""
    return f"{cluster}@{host}:{pid}" if host else "(worker not recorded)"


def outcome(value: Any, *, worker: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a successful attempt stores as its result: the JSON-normalised return value,
    the worker that ran it, and the enqueue details the result row has no column for."""
    return {RETURN_VALUE: value, WORKER_ID: worker, META: dict(meta)}


def meta(
    *,
    backend: str,
    queue_name: str,
    priority: int,
    run_after: datetime | None,
    enqueued_at: datetime,
) -> dict[str, Any]:
    # Times as ISO text: an aware datetime costs some twenty times more to pickle, and
    # these details are pickled with every payload and every result.
    return {
        "backend": backend,
        "queue_name": queue_name,
        "priority": priority,
        "run_after": run_after.isoformat() if run_after is not None else None,
        "enqueued_at": enqueued_at.isoformat(),
    }


def when(details: Mapping[str, Any], key: str) -> datetime | None:
    """A time of ``meta``'s details (ISO text), as a datetime."""
    value = details.get(key)
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@dataclasses.dataclass(frozen=True)
class Attempt:
    attempt: int
    succeeded: bool
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str
    error: TaskError | None


def history(task_id: str) -> list[Attempt]:
    """Every finished attempt of a task recorded by the engine, in order."""
    rows = JobAttempt.objects.filter(task_id=task_id).order_by("attempt", "id")
    return [
        Attempt(
            attempt=row.attempt,
            succeeded=row.succeeded,
            started_at=row.started_at,
            finished_at=row.finished_at,
            worker_id=worker_id(row.cluster, row.host, row.pid),
            error=None
            if row.succeeded
            else TaskError(
                exception_class_path=exception_class_path(row.error_type),
                traceback=row.traceback or f"{row.error_type}: {row.error_message}\n",
            ),
        )
        for row in rows.only(*_ATTEMPT_FIELDS)
    ]


@cache
def declared_task(path: str) -> Task[..., Any]:
    """The ``Task`` object at ``path`` (the module attribute ``@task`` made)."""
    try:
        found = import_string(path)
    except ImportError:
        found = None
    if not isinstance(found, Task):
        raise TaskResultDoesNotExist(f"{path!r} is not a Django task")
    return found


def task_as_enqueued(path: str, details: Mapping[str, Any]) -> Task[..., Any]:
    """The declared task with the options it was enqueued with (``.using(...)``)."""
    task = declared_task(path)
    given = {key: details.get(key) for key in ("backend", "queue_name", "priority")}
    given["run_after"] = when(details, "run_after")
    changes = {
        key: value
        for key, value in given.items()
        if value is not None and value != getattr(task, key)
    }
    if not changes:
        return task
    try:
        return dataclasses.replace(task, **changes)
    except InvalidTask:
        return task  # enqueued with options the settings no longer allow: shown as declared


def load(result_id: str, *, backend: BaseTaskBackend) -> TaskResult[..., Any]:
    """The ``TaskResult`` of the Django task ``result_id``, read from the database."""
    job = Job.objects.filter(task_id=result_id).only(*_JOB_FIELDS).first()
    if job is not None:
        return _from_job(job, backend=backend)
    row = ResultRow.objects.filter(id=result_id).first()
    if row is None:
        raise TaskResultDoesNotExist(result_id)
    return _from_result(row, backend=backend)


def _from_job(job: Job, *, backend: BaseTaskBackend) -> TaskResult[..., Any]:
    try:
        package = SignedPackage.loads(job.payload)
    except Exception:
        package = {}  # unreadable: it is dead (UnreadablePayload), arguments unknown
    details = package.get(META) or {}
    if package and not details:
        raise TaskResultDoesNotExist(f"{job.task_id} is a Tablo task, not a Django task")
    task = task_as_enqueued(job.func, details)
    attempts = history(job.task_id) if job.first_failed_at is not None else []
    worker_ids = [a.worker_id for a in attempts]
    started_at = attempts[0].started_at if attempts else None
    last_attempted_at = attempts[-1].started_at if attempts else None
    status = _STATUS[Job.State(job.state)]
    if status == TaskResultStatus.RUNNING:
        worker_ids.append(job.claimed_by)
        last_attempted_at = job.started_at or job.claimed_at
        started_at = started_at or last_attempted_at
    return _result(
        task,
        result_id=job.task_id,
        status=status,
        enqueued_at=when(details, "enqueued_at") or job.created_at,
        started_at=started_at,
        last_attempted_at=last_attempted_at,
        finished_at=job.last_failed_at if status == TaskResultStatus.FAILED else None,
        args=package.get("args", ()),
        kwargs=package.get("kwargs", {}),
        errors=[a.error for a in attempts if a.error is not None],
        worker_ids=worker_ids,
        backend=backend,
    )


def _from_result(row: ResultRow, *, backend: BaseTaskBackend) -> TaskResult[..., Any]:
    stored: dict[str, Any] = row.result if row.success and isinstance(row.result, dict) else {}
    if row.success and WORKER_ID not in stored:
        raise TaskResultDoesNotExist(f"{row.id} is a Tablo task, not a Django task")
    details = stored.get(META) or {}
    task = task_as_enqueued(row.func, details)
    attempts = history(row.id) if (row.attempt_count or 1) > 1 or not row.success else []
    failed = [a for a in attempts if not a.succeeded]
    worker_ids = [a.worker_id for a in failed]
    if row.success:
        worker_ids.append(stored[WORKER_ID])
    result = _result(
        task,
        result_id=row.id,
        status=TaskResultStatus.SUCCESSFUL if row.success else TaskResultStatus.FAILED,
        enqueued_at=when(details, "enqueued_at"),
        started_at=(attempts[0].started_at if attempts else None) or row.started,
        last_attempted_at=row.started,
        finished_at=row.stopped,
        args=row.args or (),
        kwargs=row.kwargs or {},
        errors=[a.error for a in failed if a.error is not None],
        worker_ids=worker_ids,
        backend=backend,
    )
    if row.success:
        object.__setattr__(result, "_return_value", stored[RETURN_VALUE])
    return result


def _result(
    task: Task[..., Any],
    *,
    result_id: str,
    status: TaskResultStatus,
    enqueued_at: datetime | None,
    started_at: datetime | None,
    last_attempted_at: datetime | None,
    finished_at: datetime | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    errors: list[TaskError],
    worker_ids: list[str],
    backend: BaseTaskBackend,
) -> TaskResult[..., Any]:
    return TaskResult(
        task=task,
        id=result_id,
        status=status,
        enqueued_at=enqueued_at,
        started_at=started_at,
        last_attempted_at=last_attempted_at,
        finished_at=finished_at,
        args=list(args),
        kwargs=dict(kwargs),
        backend=backend.alias,
        errors=errors,
        worker_ids=worker_ids,
    )


def ready(
    task: Task[..., Any], *, result_id: str, args: Sequence[Any], kwargs: Mapping[str, Any],
    enqueued_at: datetime, backend: BaseTaskBackend,
) -> TaskResult[..., Any]:  # fmt: skip
    """The result ``enqueue`` returns: READY, nothing run yet."""
    return _result(
        task, result_id=result_id, status=TaskResultStatus.READY, enqueued_at=enqueued_at,
        started_at=None, last_attempted_at=None, finished_at=None, args=args, kwargs=kwargs,
        errors=[], worker_ids=[], backend=backend,
    )  # fmt: skip


def running(
    task: Task[..., Any], *, result_id: str, attempt: int, worker: str, started_at: datetime,
    package: Mapping[str, Any], backend: BaseTaskBackend,
) -> TaskResult[..., Any]:  # fmt: skip
    """The result of a task as its attempt ``attempt`` starts in this worker: one worker
    id per attempt, so ``TaskContext.attempt`` is the attempt's real number."""
    attempts = history(result_id) if attempt > 1 else []
    failed = [a for a in attempts if not a.succeeded and a.attempt < attempt]
    worker_ids = [a.worker_id for a in failed][: attempt - 1]
    worker_ids += ["(worker not recorded)"] * (attempt - 1 - len(worker_ids))
    return _result(
        task,
        result_id=result_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=when(package.get(META) or {}, "enqueued_at"),
        started_at=(failed[0].started_at if failed else None) or started_at,
        last_attempted_at=started_at,
        finished_at=None,
        args=package.get("args", ()),
        kwargs=package.get("kwargs", {}),
        errors=[a.error for a in failed if a.error is not None],
        worker_ids=[*worker_ids, worker],
        backend=backend,
    )


def first_success(package: Mapping[str, Any], *, backend: BaseTaskBackend) -> TaskResult[..., Any]:
    """A task that succeeded at its first attempt, from the package the worker finished
    (no query: ``task_finished`` is sent for every such task)."""
    stored = package["result"]
    result = package.get(RUNNING)
    if isinstance(result, TaskResult):
        # The object task_started carried, finished in place (as Django's own backends do).
        for name, value in (
            ("status", TaskResultStatus.SUCCESSFUL),
            ("finished_at", package.get("stopped")),
            ("_return_value", stored[RETURN_VALUE]),
        ):
            object.__setattr__(result, name, value)
        return result
    task = task_as_enqueued(str(package["func"]), stored[META])
    result = _result(
        task,
        result_id=str(package["id"]),
        status=TaskResultStatus.SUCCESSFUL,
        enqueued_at=when(stored[META], "enqueued_at"),
        started_at=package.get("started_at"),
        last_attempted_at=package.get("started_at"),
        finished_at=package.get("stopped"),
        args=package.get("args", ()),
        kwargs=package.get("kwargs", {}),
        errors=[],
        worker_ids=[stored[WORKER_ID]],
        backend=backend,
    )
    object.__setattr__(result, "_return_value", stored[RETURN_VALUE])
    return result
