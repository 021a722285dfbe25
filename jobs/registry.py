"""The job registry: every background job is declared once, in the app that owns it.

    from jobs.registry import job

    @job("files.purge_tablo", timeout=600, max_attempts=10,
         unique=lambda tablo_id: f"purge:{tablo_id}")
    def purge_tablo(tablo_id: str) -> None:
        cleanup.tablo_files_purge(tablo_id=UUID(tablo_id))

and enqueued by name with JSON-friendly arguments:

    registry.enqueue("files.purge_tablo", str(tablo.id))
    registry.enqueue_many("files.purge_tablo", [(str(a.id),), (str(b.id),)])

Tasks are stored by the configured broker's backend (``jobs.backend``). On the
``jobs.Job`` table (``jobs.broker.DatabaseBroker``) the registry writes the rows
itself: a unique job whose key is already queued or running is not inserted
again (the partial unique index, ``ON CONFLICT DO NOTHING``) and the existing
task's id is returned, and a batch is one INSERT. On Redis
(``jobs.redis_broker``) the same holds, with one script call per task in one
round trip.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.humanhash import uuid as human_uuid
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage
from django_q.utils import get_func_repr

from jobs import completion
from jobs.channels import notify

logger = structlog.get_logger("jobs.registry")

# Brokers whose queue is the jobs.Job table (the registry may insert rows itself).
JOB_TABLE_BROKERS = ("jobs.broker.DatabaseBroker",)


class UnknownJob(LookupError):
    """Raised for a job name that no app declared."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: Callable[..., Any]
    timeout: int | None = None
    max_attempts: int | None = None  # None: settings.JOBS_DEFAULT_MAX_ATTEMPTS
    backoff: Callable[[int], float] | None = None  # attempt -> seconds; None: global
    priority: int = 0
    cluster: str | None = None
    unique: Callable[..., str] | None = None  # (*args, **kwargs) -> key
    # Writes and completion in one transaction (jobs.completion); database broker only.
    transactional: bool = False

    @property
    def path(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


_by_name: dict[str, JobSpec] = {}
_by_path: dict[str, JobSpec] = {}


def job(name: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare ``func`` as the job ``name`` (see JobSpec for the options)."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        if options.get("transactional"):
            refuse_transactional_elsewhere(name)
            func = completion.transactional(func)
        spec = JobSpec(name=name, func=func, **options)
        existing = _by_name.get(name)
        if existing is not None and existing.path != spec.path:
            raise ValueError(f"job {name!r} is declared twice: {existing.path} and {spec.path}")
        _by_name[name] = spec
        _by_path[spec.path] = spec
        return func

    return register


def unregister(name: str) -> None:
    """Forget a job (tests and scaffolding use it; apps never need to)."""
    spec = _by_name.pop(name, None)
    if spec is not None:
        _by_path.pop(spec.path, None)


def get(name: str) -> JobSpec:
    try:
        return _by_name[name]
    except KeyError:
        known = ", ".join(sorted(_by_name)) or "none"
        raise UnknownJob(f"unknown job {name!r}; registered jobs: {known}") from None


def for_func(path: str) -> JobSpec | None:
    """The spec of the job whose function has this dotted path, if registered."""
    return _by_path.get(path)


def spec_for(path: str) -> JobSpec | None:
    """The spec of the function at ``path``, importing its module first if needed.

    A job is registered when its module is imported; a process handed a task by
    path (a worker's monitor, the scheduler) may not have imported it yet. A
    function that no longer exists has no spec. A module that fails to import is
    logged: its jobs' own policy is unknown until it is fixed.
    """
    spec = _by_path.get(path)
    module = path.rpartition(".")[0]
    if spec is not None or not module or module in sys.modules:
        return spec
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None  # the module itself is gone (or the path names no module)
        logger.error("job module import failed", func=path, module=module,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return None
    except Exception as exc:
        logger.error("job module import failed", func=path, module=module,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return None
    return _by_path.get(path)


def all_jobs() -> list[JobSpec]:
    return sorted(_by_name.values(), key=lambda spec: spec.name)


def uses_job_table() -> bool:
    """True when the configured broker keeps its queue in the ``jobs.Job`` table."""
    return Conf.BROKER_CLASS in JOB_TABLE_BROKERS


class TransactionalUnsupported(ImproperlyConfigured):
    """A transactional job on a broker whose queue is not in the project database."""


def refuse_transactional_elsewhere(name: str) -> None:
    """A transactional job needs its queue row in the database its writes go to."""
    if not uses_job_table() and not Conf.SYNC:
        raise TransactionalUnsupported(
            f"job {name!r} is transactional=True, which needs the database broker "
            f"(jobs.broker.DatabaseBroker); the configured broker is "
            f"{Conf.BROKER_CLASS or 'django-q2 Redis'}. Unset QUEUE_REDIS_URL, or "
            "declare the job without transactional=True and make it idempotent."
        )


def apply_declared_options(
    sender: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    """``pre_enqueue`` receiver: a registered job keeps its declared timeout and queue.

    ``async_task`` by path or by job name, django-q2's scheduler and "Run now" build
    packages without them; the worker's guard reads ``timeout`` from the package and the
    broker routes on ``cluster``. Options the caller gave explicitly win.
    """
    if not task or task.get("func") is None:
        return
    func = task["func"]
    spec = _by_name.get(func) if isinstance(func, str) else None
    if spec is not None:
        task["func"] = spec.path  # async_task("files.purge_tablo", ...) by job name
    else:
        spec = spec_for(get_func_repr(func))
    if spec is None:
        return
    if spec.transactional:
        refuse_transactional_elsewhere(spec.name)
    if spec.timeout and not task.get("timeout"):
        task["timeout"] = spec.timeout
    if spec.cluster and not task.get("cluster"):
        task["cluster"] = spec.cluster


def build_package(spec: JobSpec, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task package ``django_q.tasks.async_task`` would build for this job."""
    human, task_id = human_uuid()
    task: dict[str, Any] = {"id": task_id, "name": human, "func": spec.path, "args": tuple(args)}
    if spec.cluster:
        task["cluster"] = spec.cluster
    if spec.timeout:
        task["timeout"] = spec.timeout
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    if Conf.SYNC:
        task["sync"] = Conf.SYNC
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

    A unique job on the job table is inserted in the caller's transaction instead:
    workers see the row only once it commits (what deferring is for), and the id
    returned is the task that really holds the key, not one that a duplicate would
    never create. Its row also commits or rolls back with the caller's data.
    """
    if transaction.get_autocommit():
        return False
    return not (spec.unique is not None and uses_job_table() and not Conf.SYNC)


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
        from django_q.tasks import _sync

        return [_sync(SignedPackage.dumps(task)) for task in tasks]
    from jobs import backend

    # The broker's queue name is its list_key: the job's cluster, else ours.
    return backend.current().enqueue(tasks, queue=spec.cluster or Conf.CLUSTER_NAME)


def insert_rows(tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
    """Insert ``Job`` rows in one statement; a duplicate of an active unique key is skipped."""
    from jobs.broker import DatabaseBroker
    from jobs.models import Job
    from jobs.queue import job_row_from_task

    alias = Conf.ORM if isinstance(Conf.ORM, str) else "default"
    if len(tasks) == 1:
        # One task: the broker's single statement (INSERT ... ON CONFLICT DO
        # NOTHING with its NOTIFY), one round trip like async_task(), instead of
        # a transaction around an INSERT and a separate NOTIFY.
        [task] = tasks
        payload = SignedPackage.dumps(task)
        if DatabaseBroker(list_key=queue).enqueue(payload) is not None:
            return [task["id"]]
        # Skipped: a task with the same unique key is queued or running.
        row = job_row_from_task(task, queue=queue, payload=payload)
        active = _active_task_ids(alias, {row.unique_key})
        return [active.get(row.unique_key, row.task_id)]

    rows = [
        job_row_from_task(task, queue=queue, payload=SignedPackage.dumps(task)) for task in tasks
    ]
    with transaction.atomic(using=alias):
        # ON CONFLICT DO NOTHING (INSERT OR IGNORE on SQLite): a duplicate unique
        # key is skipped without aborting the caller's transaction.
        Job.objects.using(alias).bulk_create(rows, ignore_conflicts=True)
        keys = {row.unique_key for row in rows if row.unique_key is not None}
        active = _active_task_ids(alias, keys) if keys else {}
        notify(alias, [queue])
    return [
        active.get(row.unique_key, row.task_id) if row.unique_key else row.task_id for row in rows
    ]


def _active_task_ids(alias: str, keys: Collection[str | None]) -> dict[str | None, str]:
    """unique key -> task id of the queued or running task holding it."""
    from jobs.models import Job

    return dict(
        Job.objects.using(alias)
        .filter(unique_key__in=keys, state__in=Job.ACTIVE_STATES)
        .values_list("unique_key", "task_id")
    )
