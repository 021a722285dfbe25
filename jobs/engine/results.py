"""Finishing succeeded tasks in batches: the queue row, the result, the chain, the hook.

django-q2's monitor saves each result (``save_task``: a SELECT, an INSERT and,
with ``save_limit`` > 0, a prune under a table lock) and then acknowledges the
task, one task at a time. On the project's brokers, the monitor's ``save_task``
(installed by ``jobs.engine.djangoq``) hands a succeeded task to this process's
``Finisher`` and the broker's ``acknowledge`` adds its ack id. A thread finishes
what piled up every ``JOBS_ACK_BATCH_SECONDS`` through ``broker.finish_batch``;
on the database broker, in one transaction:

1. delete the ``Job`` rows this node still owns at that attempt (``RETURNING``);
2. for exactly those rows, insert the ``Task`` results in one statement and
   enqueue each chain's next link;

and after the commit sends ``post_save`` for each result, which calls the task's
``hook`` (django-q2's own receiver) and any receiver of the project's. A node that
lost a task (declared dead, the task handed out again) writes nothing for it: the
new attempt does. So a result, its hook and the next link of a chain happen once
per finished task, and a crash before the commit only means the task runs again.

The Redis broker acknowledges the batch in one script call, then writes the
results of the tasks it says this node held. Tasks that come from no project
broker (``sync=True``) are written at once, the same way, without a queue row.
"""

# SQL text here is built only from model metadata and integers, never from input.
# ruff: noqa: S608

from __future__ import annotations

import atexit
import base64
import multiprocessing.util
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import (
    connections,
    router,
    transaction,
)
from django.db.models.signals import post_save
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Task
from django_q.signing import SignedPackage
from django_q.tasks import async_chain

from jobs.engine.context import AckId
from jobs.engine.funcs import func_path
from jobs.models import Job

logger = structlog.stdlib.get_logger("jobs.engine.results")


JOB_TABLE = Job._meta.db_table
# Set on a task package whose completion committed in the worker (jobs.engine.completion).
COMPLETED_IN_WORKER = "completed_in_worker"
# A batch is finished at once when it reaches this size.
BATCH_MAX = 500
# The fields a result row gets again when the task finishes again (a retried dead task).
_UPDATED_ON_CONFLICT = ["stopped", "result", "success", "attempt_count", "cluster", "started"]


def keeps(task: dict[str, Any]) -> bool:
    """Whether the task's result is saved (django-q2's per-task ``save`` option)."""
    return bool(task.get("save", Conf.SAVE_LIMIT >= 0))


def _fields(task: dict[str, Any]) -> dict[str, Any]:
    """The ``Task`` field values of a finished task package (as django-q2's ``save_task``)."""
    return {
        "id": task["id"],
        "name": str(task.get("name") or "")[:100],
        "func": func_path(task.get("func"))[:256],
        "hook": func_path(task["hook"]) if task.get("hook") else None,
        "args": task.get("args"),
        "kwargs": task.get("kwargs"),
        "result": task.get("result"),
        "group": None if task.get("group") is None else str(task["group"])[:100],
        "started": task.get("started_at") or task.get("started") or timezone.now(),
        "stopped": task.get("stopped") or timezone.now(),
        "success": bool(task.get("success")),
        "attempt_count": max(int(task.get("attempt") or 1), 1),
        "cluster": str(task.get("cluster") or Conf.CLUSTER_NAME)[:100],
    }


def result_row(task: dict[str, Any]) -> Task:
    """The ``Task`` row of a finished task package."""
    return Task(**_fields(task))


# The result columns in one INSERT ... SELECT FROM unnest(arrays) on PostgreSQL: one
# parameter per column instead of one per value, and the pickles encoded as
# django-picklefield stores them (base64 of the pickle), without its deep copy.
_COLUMNS = list(_fields({"id": ""}))
_PICKLED = {"args", "kwargs", "result"}
_ARRAY_TYPES = {"started": "timestamptz", "stopped": "timestamptz", "success": "boolean",
                "attempt_count": "integer"}  # fmt: skip
_QUOTED = ", ".join(f'"{c}"' for c in _COLUMNS)
_SELECTED = ", ".join(f'r."{c}"' for c in _COLUMNS)
_UNNEST = ", ".join(f"%s::{_ARRAY_TYPES.get(c, 'text')}[]" for c in _COLUMNS)
_UPSERT_SET = ", ".join(f'"{c}" = excluded."{c}"' for c in _UPDATED_ON_CONFLICT)


def _pickled(value: Any) -> str | None:
    return None if value is None else base64.b64encode(pickle.dumps(value, -1)).decode()


def _column_arrays(tasks: list[dict[str, Any]]) -> list[list[Any]]:
    arrays: list[list[Any]] = [[] for _ in _COLUMNS]
    for task in tasks:
        for array, (name, value) in zip(arrays, _fields(task).items(), strict=True):
            array.append(_pickled(value) if name in _PICKLED else value)
    return arrays


def _saved(task: dict[str, Any]) -> bool:
    """A result row is written for a kept success and for every final failure."""
    return keeps(task) or not task.get("success")


def _save_rows(alias: str, tasks: list[dict[str, Any]]) -> list[Task]:
    rows = [result_row(task) for task in tasks if _saved(task)]
    if rows:
        Task.objects.using(alias).bulk_create(
            rows, update_conflicts=True, unique_fields=["id"], update_fields=_UPDATED_ON_CONFLICT
        )
    return rows


def _continue_chains(tasks: Iterable[dict[str, Any]], broker: Any) -> None:
    for task in tasks:
        if task.get("chain") and task.get("success"):
            async_chain(
                task["chain"],
                group=task.get("group"),
                cached=task.get("cached", Conf.CACHED),
                sync=task.get("sync", False),
                broker=broker,
            )


def _send_saved(alias: str, rows: list[Task]) -> None:
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


def save_finished(tasks: list[dict[str, Any]], broker: Any) -> None:
    """Write finished tasks' results, next chain links and hooks now (no queue row here)."""
    if not tasks:
        return
    alias = router.db_for_write(Task)
    with transaction.atomic(using=alias):
        rows = _save_rows(alias, tasks)
        _continue_chains(tasks, broker)
    _send_saved(alias, rows)


def write_in_transaction(alias: str, task: dict[str, Any], *, broker: Any) -> None:
    """Inside the caller's transaction: the result row and the chain's next link."""
    _save_rows(alias, [task])
    _continue_chains([task], broker)


def announce(task: dict[str, Any]) -> None:
    """``post_save`` (``hook=``) for a result already written with its completion."""
    if keeps(task):
        _send_saved(router.db_for_write(Task), [result_row(task)])


def save_final_failure(
    payload: str,
    *,
    result: str,
    attempt: int,
    started: datetime | None,
    stopped: datetime,
    cluster: str = "",
) -> None:
    """A task that failed for good (dead): its ``Failure`` result and hook, once.

    ``payload`` is the task's signed package from its queue row. A chain stops at a
    link that dies; the links left are logged, and run on if the dead task is
    retried and succeeds (its payload still holds the chain).
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
    rows = _save_rows(alias, [task])
    _send_saved(alias, rows)
    if task.get("chain"):
        logger.warning(
            "chain stopped",
            task_id=task.get("id"),
            links_not_run=len(task["chain"]),
            next_func=func_path(task["chain"][0][0]) if task["chain"][0] else "",
        )


def _delete_sql(acks: list[AckId], owner: int | None) -> str:
    # Every value is an int: the statement can be sent without parameters.
    pairs = ",".join(f"({int(row_id)},{int(attempt)})" for row_id, attempt in acks)
    owned = f"owner = {int(owner)}" if owner is not None else "owner IS NULL"
    return (
        f"DELETE FROM {JOB_TABLE} WHERE {owned} AND (id, attempt) IN (VALUES {pairs}) "
        "RETURNING id, attempt"
    )


def delete_acknowledged(alias: str, acks: list[AckId], *, owner: int | None) -> set[AckId]:
    """Delete the rows of succeeded tasks in one statement; returns the acks deleted.

    Only rows ``owner`` still holds at that attempt: a node that lost a task
    (declared dead, the task handed out again) cannot delete the new claim.
    """
    if not acks:
        return set()
    with connections[alias].cursor() as cursor:
        cursor.execute(_delete_sql(acks, owner))
        return {(int(r[0]), int(r[1])) for r in cursor.fetchall()}


def _delete_and_save_postgresql(
    alias: str, acks: list[AckId], kept: dict[AckId, dict[str, Any]], owner: int | None
) -> set[AckId]:
    """One statement: delete the owned rows, insert the results of exactly those."""
    ordered = list(kept)
    arrays = _column_arrays([kept[ack] for ack in ordered])
    arrays += [[ack[0] for ack in ordered], [ack[1] for ack in ordered]]
    sql = (
        f"WITH done AS ({_delete_sql(acks, owner)}), "
        f"saved AS (INSERT INTO {Task._meta.db_table} ({_QUOTED}) "
        f"SELECT {_SELECTED} "
        f"FROM unnest({_UNNEST}, %s::bigint[], %s::integer[]) "
        f"AS r({_QUOTED}, row_id, row_attempt) "
        "JOIN done ON done.id = r.row_id AND done.attempt = r.row_attempt "
        f"ON CONFLICT (id) DO UPDATE SET {_UPSERT_SET} RETURNING 1) "
        "SELECT id, attempt FROM done"
    )
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, arrays)
        return {(int(r[0]), int(r[1])) for r in cursor.fetchall()}


def finish(
    alias: str,
    acks: list[AckId],
    tasks: dict[AckId, dict[str, Any]],
    *,
    owner: int | None,
    broker: Any = None,
) -> set[AckId]:
    """Finish acknowledged tasks in one transaction (see the module docstring)."""
    with transaction.atomic(using=alias):
        db = connections[alias]
        if db.vendor == "postgresql":
            # A finish lost in a database crash only means the task runs again
            # (delivery is at least once): no need to wait for the WAL flush.
            with db.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        kept = {ack: tasks[ack] for ack in acks if ack in tasks and _saved(tasks[ack])}
        if kept and db.vendor == "postgresql":
            deleted = _delete_and_save_postgresql(alias, acks, kept, owner)
            rows = [result_row(task) for ack, task in kept.items() if ack in deleted]
        else:
            deleted = delete_acknowledged(alias, acks, owner=owner)
            rows = _save_rows(alias, [task for ack, task in kept.items() if ack in deleted])
        _continue_chains([tasks[ack] for ack in acks if ack in deleted and ack in tasks], broker)
    _send_saved(alias, rows)
    return deleted


class Finisher:
    """The succeeded tasks of one process, finished in batches by a background thread.

    A monitor that exits finishes first (multiprocessing finalizer and atexit); one
    that is killed loses at most ``delay`` seconds of work, and its node is dead
    then: those tasks are handed out again and run again.
    """

    def __init__(
        self, alias: str, delay: float, broker: Any, owner: Callable[[], int | None]
    ) -> None:
        self.alias = alias
        self.delay = delay
        self.broker = broker
        self.owner = owner  # this process's worker node, at the time of each flush
        self.acks: list[AckId] = []
        self.tasks: dict[AckId, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="jobs-finisher", daemon=True)
        self.thread.start()
        multiprocessing.util.Finalize(self, self.flush, exitpriority=100)
        atexit.register(self.flush)

    def add_result(self, ack: AckId, task: dict[str, Any]) -> None:
        with self.lock:
            self.tasks[ack] = task

    def add_ack(self, ack: AckId) -> None:
        with self.lock:
            self.acks.append(ack)
            full = len(self.acks) >= BATCH_MAX
        if full:
            self.wake.set()

    def pending(self) -> int:
        with self.lock:
            return len(self.acks)

    def flush(self) -> None:
        with self.lock:
            acks, self.acks = self.acks, []
            tasks = {ack: self.tasks.pop(ack) for ack in acks if ack in self.tasks}
        if not acks:
            return
        try:
            self.broker.finish_batch(acks, tasks, owner=self.owner())
        except self.broker.transient_errors:
            # The database (or Redis) is unreachable: try the whole batch again later.
            with self.lock:
                self.acks[:0] = acks
                self.tasks.update(tasks)
            connections[self.alias].close()
            raise
        except Exception:
            # One task's result cannot be written (a value a column refuses, a result
            # that does not pickle): it must not hold back the others. Each is
            # finished alone; one that still fails is finished without its result.
            self._finish_one_by_one(acks, tasks)

    def _finish_one_by_one(self, acks: list[AckId], tasks: dict[AckId, dict[str, Any]]) -> None:
        for ack in acks:
            one = {ack: tasks[ack]} if ack in tasks else {}
            try:
                self.broker.finish_batch([ack], one, owner=self.owner())
            except self.broker.transient_errors:
                with self.lock:
                    self.acks.append(ack)
                    self.tasks.update(one)
                raise
            except Exception:
                logger.exception(
                    "task result could not be saved", task_id=one.get(ack, {}).get("id")
                )
                self.broker.finish_batch([ack], {}, owner=self.owner())

    def stop(self) -> None:
        """Finish what is pending, end the thread and close its database connection."""
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.wake.wait(self.delay)
                self.wake.clear()
                try:
                    self.flush()
                except Exception:
                    logger.exception("could not finish acknowledged tasks; retrying")
                    time.sleep(1.0)
        finally:
            connections[self.alias].close()  # this thread's own connection


_finishers: dict[tuple[int, str], Finisher] = {}
_finishers_lock = threading.Lock()


def finisher(alias: str, broker: Any, owner: Callable[[], int | None]) -> Finisher:
    """This process's finisher for ``alias`` (a forked child starts its own thread).

    ``owner`` tells the worker node this process claims for (``jobs.engine.nodes``).
    """
    key = (os.getpid(), alias)
    with _finishers_lock:
        found = _finishers.get(key)
        if found is None:
            delay = float(settings.JOBS_ACK_BATCH_SECONDS)
            found = _finishers[key] = Finisher(alias, delay, broker, owner)
        return found


def flush_all() -> None:
    """Finish every acknowledgement this process still holds."""
    for (pid, _alias), found in list(_finishers.items()):
        if pid == os.getpid():
            found.flush()


def stop_all() -> None:
    """Finish and stop this process's finisher threads (a new ack starts one again)."""
    with _finishers_lock:
        mine = [key for key in _finishers if key[0] == os.getpid()]
        found = [_finishers.pop(key) for key in mine]
    for one in found:
        one.stop()


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
