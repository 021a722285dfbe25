"""The job registry: every background job is declared once, in the app that owns it.

    from jobs.engine.registry import job

    @job("files.purge_tablo", timeout=600, max_attempts=10,
         unique=lambda tablo_id: f"purge:{tablo_id}")
    def purge_tablo(tablo_id: str) -> None:
        cleanup.tablo_files_purge(tablo_id=UUID(tablo_id))

and enqueued by name with JSON-friendly arguments:

    registry.enqueue("files.purge_tablo", str(tablo.id))
    registry.enqueue_many("files.purge_tablo", [(str(a.id),), (str(b.id),)])

Tasks are rows of the ``jobs.Job`` table (``jobs.engine.backend``), which the
registry writes itself: a unique job whose key is already queued or running is not
inserted again (the partial unique index, ``ON CONFLICT DO NOTHING``) and the
existing task's id is returned, and a batch is one INSERT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.humanhash import uuid as human_uuid
from django_q.signals import pre_enqueue
from django_q.utils import get_func_repr

from jobs.engine import completion, specs, transitions, worker
from jobs.engine.specs import (
    Every,
    JobSpec,
    UnknownJob,
    all_jobs,
    for_func,
    get,
    spec_for,
    unregister,
)

# Declaring and looking up jobs is this module's API; the table itself is jobs.engine.specs.
__all__ = [
    "Every",
    "JobSpec",
    "UnknownJob",
    "all_jobs",
    "apply_declared_options",
    "build_package",
    "enqueue",
    "enqueue_many",
    "for_func",
    "get",
    "job",
    "spec_for",
    "unregister",
]

logger = structlog.get_logger("jobs.engine.registry")


def job(name: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare ``func`` as the job ``name`` (see JobSpec for the options)."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        if options.get("transactional"):
            func = completion.transactional(func)
        specs.add(JobSpec(name=name, func=func, **options))
        return func

    return register


def apply_declared_options(
    sender: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    """``pre_enqueue`` receiver: a registered job keeps its declared timeout and queue.

    ``async_task`` by path or by job name, django-q2's scheduler and "Run now" build
    packages without them; the worker's alarm reads ``timeout`` from the package and the
    broker routes on ``cluster``. Options the caller gave explicitly win.
    """
    if not task or task.get("func") is None:
        return
    func = task["func"]
    spec = specs.by_name(func) if isinstance(func, str) else None
    if spec is not None:
        task["func"] = spec.path  # async_task("files.purge_tablo", ...) by job name
    else:
        spec = spec_for(get_func_repr(func))
    if spec is None:
        return
    if spec.timeout and not task.get("timeout"):
        task["timeout"] = spec.timeout
    if spec.cluster and not task.get("cluster"):
        task["cluster"] = spec.cluster


def build_package(spec: JobSpec, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task package ``async_task`` would build for this job (and its ``pre_enqueue``).

    The registry builds packages itself to insert many in one statement.
    """
    human, task_id = human_uuid()
    task: dict[str, Any] = {"id": task_id, "name": human, "func": spec.path, "args": tuple(args)}
    if spec.cluster:
        task["cluster"] = spec.cluster
    if spec.timeout:
        task["timeout"] = spec.timeout
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    if Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    task["kwargs"] = dict(kwargs)
    task["started"] = timezone.now()
    pre_enqueue.send(sender="django_q", task=task)
    return task


def enqueue(name: str, *args: Any, on_commit: bool = True, **kwargs: Any) -> str:
    """Enqueue the registered job ``name``; returns the task id.

    By default the task is enqueued after the current transaction commits, so
    the worker never sees data that was rolled back (the returned id is the one
    the task gets then); a failure to enqueue then is logged (``enqueue after
    commit failed``) and never raised into the committed caller. A unique job on
    the job table is inserted inside the caller's transaction (see _defer).
    ``on_commit=False`` puts the queue row inside the caller's transaction
    instead: it commits or rolls back with the caller's data.
    A unique job whose key is already queued or running is not enqueued again:
    the id of the task already there is returned.
    """
    spec = get(name)
    task = build_package(spec, args, kwargs)
    if on_commit and _defer(spec):
        transaction.on_commit(_after_commit([task], spec=spec), robust=True)
        task_id: str = task["id"]
        return task_id
    return _push([task], spec=spec)[0]


def enqueue_many(
    name: str, calls: Iterable[Sequence[Any] | dict[str, Any]], *, on_commit: bool = True
) -> list[str]:
    """Enqueue the job ``name`` once per item of ``calls``, in one INSERT.

    An item is a sequence of positional arguments, or a dict ``{"args": [...],
    "kwargs": {...}}``. Returns the task ids in the order of ``calls`` (for a
    duplicate unique key, the id of the task already queued).
    """
    spec = get(name)
    tasks = []
    for call in calls:
        if isinstance(call, dict):
            args, kwargs = call.get("args", ()), call.get("kwargs", {})
        else:
            args, kwargs = call, {}
        tasks.append(build_package(spec, args, kwargs))
    if not tasks:
        return []
    if on_commit and _defer(spec):
        transaction.on_commit(_after_commit(tasks, spec=spec), robust=True)
        return [task["id"] for task in tasks]
    return _push(tasks, spec=spec)


def _defer(spec: JobSpec) -> bool:
    """Whether an ``on_commit`` enqueue must wait for the caller's commit.

    A unique job is inserted in the caller's transaction instead:
    workers see the row only once it commits (what deferring is for), and the id
    returned is the task that really holds the key, not one that a duplicate would
    never create. Its row also commits or rolls back with the caller's data.
    """
    if transaction.get_autocommit():
        return False
    return not (spec.unique is not None and not Conf.SYNC)


def _after_commit(tasks: list[dict[str, Any]], *, spec: JobSpec) -> Callable[[], None]:
    def push() -> None:
        # The caller's work is committed: a failing insert must not turn it into an
        # error page, but it must be visible.
        try:
            _push(tasks, spec=spec)
        except Exception:
            logger.exception(
                "enqueue after commit failed",
                job=spec.name,
                task_ids=[task["id"] for task in tasks],
            )
            raise  # robust=True: Django logs it too and runs the other callbacks

    return push


def _push(tasks: list[dict[str, Any]], *, spec: JobSpec) -> list[str]:
    if Conf.SYNC:
        return [worker.run_inline(task) for task in tasks]
    # The broker's queue name is its list_key: the job's cluster, else ours.
    return transitions.insert_many(tasks, queue=spec.cluster or Conf.CLUSTER_NAME)


def connect_signals() -> None:
    """Declared options apply to every enqueue, whichever API makes it (idempotent)."""
    pre_enqueue.connect(
        apply_declared_options, dispatch_uid="jobs.engine.registry.apply_declared_options"
    )
