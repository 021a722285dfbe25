"""Results: django-q2's ``Task`` rows (``Success``/``Failure``), cached results, chains, hooks.

A finished task's result is written with its completion (``transitions.finish``, one
transaction per batch; on PostgreSQL one statement), and after the commit
``post_save`` is sent for it, which calls the task's ``hook`` (django-q2's own
receiver) and any receiver of the project's. A failed attempt's result is written by
``save_failure`` (from ``transitions.fail``).
"""

from __future__ import annotations

import base64
import contextlib
import pickle
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import (
    router,
    transaction,
)
from django.db.models.signals import post_save
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Task
from django_q.signing import SignedPackage
from django_q.tasks import async_chain

from jobs.engine import context
from jobs.engine.execute import clean
from jobs.engine.funcs import func_path
from jobs.models import JobAttempt

logger = structlog.stdlib.get_logger("jobs.engine.results")


# Set on a task package whose completion committed in the worker (jobs.engine.completion).
COMPLETED_IN_WORKER = "completed_in_worker"
# The fields a result row gets again when the task finishes again (a retried dead task).
_UPDATED_ON_CONFLICT = ["stopped", "result", "success", "attempt_count", "cluster", "started"]


def keeps(task: dict[str, Any]) -> bool:
    """Whether the task's result is saved (django-q2's per-task ``save`` option)."""
    return bool(task.get("save", Conf.SAVE_LIMIT >= 0))


def _fields(task: dict[str, Any]) -> dict[str, Any]:
    """The ``Task`` field values of a finished task package (as django-q2's ``save_task``)."""
    return {
        "id": task["id"],
        "name": clean(str(task.get("name") or ""))[:100],
        "func": clean(func_path(task.get("func")))[:256],
        "hook": clean(func_path(task["hook"])) if task.get("hook") else None,
        "args": task.get("args"),
        "kwargs": task.get("kwargs"),
        "result": task.get("result"),
        "group": None if task.get("group") is None else clean(str(task["group"]))[:100],
        "started": task.get("started_at") or task.get("started") or timezone.now(),
        "stopped": task.get("stopped") or timezone.now(),
        "success": bool(task.get("success")),
        "attempt_count": max(int(task.get("attempt") or 1), 1),
        "cluster": clean(str(task.get("cluster") or Conf.CLUSTER_NAME))[:100],
    }


def result_row(task: dict[str, Any]) -> Task:
    """The ``Task`` row of a finished task package."""
    return Task(**_fields(task))


# The result columns as arrays, one per column, in this order, with their element
# types: the finish function's parameters on PostgreSQL (migration 0017 of jobs). The
# pickles are encoded as django-picklefield stores them (base64 of the pickle), without
# its deep copy.
RESULT_COLUMNS = {
    "id": "text", "name": "text", "func": "text", "hook": "text", "args": "text",
    "kwargs": "text", "result": "text", "group": "text", "started": "timestamptz",
    "stopped": "timestamptz", "success": "boolean", "attempt_count": "int", "cluster": "text",
}  # fmt: skip
_PICKLED = {"args", "kwargs", "result"}


def _pickled(value: Any) -> str | None:
    return None if value is None else base64.b64encode(pickle.dumps(value, -1)).decode()


def column_arrays(tasks: list[dict[str, Any]]) -> list[list[Any]]:
    """The result rows of ``tasks`` as one array per column (``RESULT_COLUMNS``)."""
    arrays: list[list[Any]] = [[] for _ in RESULT_COLUMNS]
    for task in tasks:
        fields = _fields(task)
        for array, name in zip(arrays, RESULT_COLUMNS, strict=True):
            value = fields[name]
            array.append(_pickled(value) if name in _PICKLED else value)
    return arrays


def saved(task: dict[str, Any]) -> bool:
    """A result row is written for a kept success and for every failure (a cached task's
    result goes to the cache instead, ``save_cached``)."""
    if task.get("cached"):
        return False
    return keeps(task) or not task.get("success")


def save_rows(alias: str, tasks: list[dict[str, Any]]) -> list[Task]:
    rows = [result_row(task) for task in tasks if saved(task)]
    if rows:
        Task.objects.using(alias).bulk_create(
            rows, update_conflicts=True, unique_fields=["id"], update_fields=_UPDATED_ON_CONFLICT
        )
    return rows


def continue_chains(tasks: Iterable[dict[str, Any]], broker: Any) -> None:
    for task in tasks:
        if task.get("chain") and task.get("success"):
            with context.follow_up(task):
                async_chain(
                    task["chain"],
                    group=task.get("group"),
                    cached=task.get("cached", Conf.CACHED),
                    sync=task.get("sync", False),
                    broker=broker,
                )


def send_saved(alias: str, rows: list[Task]) -> None:
    """``post_save`` for each result written: django-q2 calls ``hook=`` from it."""
    for row in rows:
        try:
            post_save.send(
                sender=Task, instance=row, created=True, raw=False, using=alias, update_fields=None
            )
        except Exception:
            # django-q2's receiver logs a failing hook itself; another receiver that
            # raises must not stop the hooks of the rest of the batch.
            logger.exception("result receiver failed", task_id=row.id)


def save_inline(task: dict[str, Any]) -> None:
    """A task run in the caller's process (sync mode): its result, chain and hook now."""
    if task.get("cached"):
        save_cached(task)
        continue_chains([task], None)
        return
    alias = router.db_for_write(Task)
    with transaction.atomic(using=alias):
        rows = save_rows(alias, [task]) if keeps(task) else []
        continue_chains([task], None)
    send_saved(alias, rows)


def write_in_transaction(alias: str, task: dict[str, Any], *, broker: Any) -> None:
    """Inside the caller's transaction: the result row, the chain's next link, the history."""
    save_rows(alias, [task])
    continue_chains([task], broker)
    close_histories([task])


def announce(task: dict[str, Any]) -> None:
    """``post_save`` (``hook=``) for a result already written with its completion."""
    if keeps(task):
        send_saved(router.db_for_write(Task), [result_row(task)])


def save_failure(
    payload: str,
    *,
    final: bool,
    result: str,
    attempt: int,
    started: datetime | None,
    stopped: datetime,
    cluster: str = "",
) -> None:
    """A failed attempt: the task's ``Failure`` result (replaced by a later success) and hook.

    The row is written in the caller's transaction, the one that makes the task ready
    again: a retry that starts once it commits, and succeeds, replaces it, never the
    other way round. The hook, a cached result and the log line run after the commit.
    ``payload`` is the task's signed package from its queue row. A chain stops at a
    link that dies (``final``); the links left are logged, and run on if the dead task
    is retried and succeeds (its payload still holds the chain).
    """
    try:
        task = SignedPackage.loads(payload)
    except Exception:
        return  # an unreadable payload: there is no task to report a result for
    task.update(
        success=False,
        result=result,
        attempt=attempt,
        started_at=started or stopped,
        stopped=stopped,
        cluster=cluster or task.get("cluster"),
    )
    alias = router.db_for_write(Task)
    rows = [] if task.get("cached") else save_rows(alias, [task])

    def announce() -> None:
        if task.get("cached"):
            save_cached(task)
        send_saved(alias, rows)
        if final and task.get("chain"):
            logger.warning(
                "chain stopped",
                task_id=task.get("id"),
                links_not_run=len(task["chain"]),
                next_func=func_path(task["chain"][0][0]) if task["chain"][0] else "",
            )

    transaction.on_commit(announce, using=alias)


# Group members of cached tasks are collected in one cache entry per group, which
# several workers may append to at once: each append holds this lock.
_GROUP_LOCK_SECONDS = 10


def save_cached(task: dict[str, Any]) -> None:
    """django-q2's ``cached=`` results: the task's package in the cache, under
    ``<queue>:<task id>``, and its key listed in its group; the last member of an
    ``async_iter`` collates the group's results into one result (``result(iter_id)``).
    """
    broker = get_broker()
    prefix = broker.list_key
    timeout = None if task["cached"] is True else task["cached"]
    key = f"{prefix}:{task['id']}"
    group = task.get("group")
    try:
        # Its own entry first: once its key is listed in the group, the member that
        # completes the group reads it.
        broker.cache.set(key, SignedPackage.dumps(task), timeout)
        if group:
            with _locked(broker.cache, f"{prefix}:{group}:lock"):
                _collate(broker, task, group, key, timeout)
    except Exception:
        logger.exception("cached result not saved", task_id=task.get("id"))


def _collate(broker: Any, task: dict[str, Any], group: str, key: str, timeout: Any) -> bool:
    """Add ``key`` to its group; True when it completed an iter group (and saved it)."""
    prefix = broker.list_key
    group_key = f"{prefix}:{group}:keys"
    members: list[str] = broker.cache.get(group_key) or []
    iter_count = task.get("iter_count", 0)
    if not (iter_count and len(members) == iter_count - 1):
        members.append(key)
        broker.cache.set(group_key, members, timeout)
        return False
    args_key = f"{prefix}:{group}:args"
    collated = dict(task)
    collated["result"] = [SignedPackage.loads(broker.cache.get(k))["result"] for k in members]
    collated["result"].append(task["result"])
    collated["id"] = group
    collated["args"] = SignedPackage.loads(broker.cache.get(args_key))
    collated.pop("iter_count", None)
    collated.pop("group", None)
    if collated.get("iter_cached"):
        collated["cached"] = collated.pop("iter_cached")
        broker.cache.set(f"{prefix}:{group}", SignedPackage.dumps(collated), timeout)
    else:
        collated.pop("cached", None)
        alias = router.db_for_write(Task)
        send_saved(alias, save_rows(alias, [collated]))
    broker.cache.delete_many([*members, key, group_key, args_key])
    return True


@contextlib.contextmanager
def _locked(cache: Any, name: str) -> Iterator[None]:
    deadline = time.monotonic() + _GROUP_LOCK_SECONDS
    while not cache.add(name, 1, _GROUP_LOCK_SECONDS):
        if time.monotonic() > deadline:
            break  # a holder that died: its lock expires with the cache entry
        time.sleep(0.005)
    try:
        yield
    finally:
        cache.delete(name)


def close_histories(tasks: list[dict[str, Any]]) -> None:
    """A task that had failed before succeeded: its history ends with this attempt."""
    retried = [task for task in tasks if int(task.get("attempt") or 1) > 1]
    if not retried:
        return
    JobAttempt.objects.bulk_create(
        [
            JobAttempt(
                task_id=str(task.get("id") or ""),
                attempt=int(task["attempt"]),
                func=func_path(task.get("func"))[:256],
                job_name=str(task.get("job_name") or "")[:100],
                succeeded=True,
                started_at=task.get("started_at"),
                finished_at=task.get("stopped") or timezone.now(),
                cluster=str((task.get("worker") or {}).get("cluster") or "")[:100],
                host=str((task.get("worker") or {}).get("host") or "")[:255],
                pid=(task.get("worker") or {}).get("pid"),
            )
            for task in retried
        ]
    )


# -- retention --------------------------------------------------------------------
PRUNE_BATCH = 5_000


@dataclass(frozen=True)
class PruneReport:
    by_age: int
    by_count: int


def _delete_in_batches(alias: str, queryset: Any) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("id", flat=True)[:PRUNE_BATCH])
        if not ids:
            return deleted
        count, _ = Task.objects.using(alias).filter(id__in=ids).delete()
        deleted += count


def prune(
    *, max_rows: int | None = None, max_age_hours: int | None = None, now: Any = None
) -> PruneReport:
    """Delete results beyond the retention settings, a batch of rows per statement.

    Age applies to every result (a failure's full history stays in ``JobAttempt``);
    the row count to successes, the newest kept.
    """
    max_rows = settings.JOBS_RESULTS_MAX_ROWS if max_rows is None else max_rows
    max_age = settings.JOBS_RESULTS_MAX_AGE_HOURS if max_age_hours is None else max_age_hours
    alias = router.db_for_write(Task)
    tasks = Task.objects.using(alias)
    by_age = by_count = 0
    if max_age > 0:
        cutoff = (now or timezone.now()) - timedelta(hours=max_age)
        by_age = _delete_in_batches(alias, tasks.filter(stopped__lt=cutoff))
    if max_rows > 0:
        newest = tasks.filter(success=True).order_by("-stopped", "-id")
        boundary = list(newest.values_list("stopped", flat=True)[max_rows : max_rows + 1])
        if boundary:
            by_count = _delete_in_batches(
                alias, tasks.filter(success=True, stopped__lte=boundary[0]).order_by("stopped")
            )
    if by_age or by_count:
        logger.info("results pruned", by_age=by_age, by_count=by_count)
    return PruneReport(by_age=by_age, by_count=by_count)
