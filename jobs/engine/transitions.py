"""Every change of a task's ``jobs.Job`` row, and only here.

The row is the task while it is queued, running or failed; a finished task's row is
deleted (its result and history live in django-q2's ``Task`` and in ``JobAttempt``).

=============  =======================================  ===============================
transition     function                                 row
=============  =======================================  ===============================
enqueue        ``insert``, ``insert_many``              new: ``queued``
claim          ``claim``                                ``queued``/``retrying`` ->
                                                        ``running``, owner and claimer
                                                        stamped, not started
start          ``start``, ``mark_started``              ``attempt`` + 1, ``started_at``
finish         ``finish``, ``finish_in_transaction``    deleted (result written)
fail           ``fail``                                 -> ``retrying`` at its backoff,
                                                        or ``dead``; one ``JobAttempt``
hand back      ``give_back``, ``worker_lost``           unstarted claim: ready again,
                                                        nothing recorded
hand out       ``take_node``, ``rescue_ownerless``      started on a lost node: one
                                                        ``WorkerLost`` attempt, then
                                                        ready again (dead at its last)
progress       ``set_progress``                         ``progress_*`` of a running task
retry          ``requeue_failed``                       ``retrying``/``dead`` -> ``queued``
                                                        with a fresh attempt budget
delete         ``delete_waiting``, ``purge_queue``      removed by an operator
=============  =======================================  ===============================

Every write after the claim is conditional on who holds the row (``owner``, and for a
worker's own finish ``claimed_by``) and at which ``attempt``: a node declared dead, or
a late report about an old attempt, changes nothing. An attempt counts only once it
starts: a claimed task that never started goes back as it was.
"""

# SQL text here is built only from model metadata and integers, never from input;
# every other value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django_q.conf import Conf
from django_q.signing import SignedPackage

from jobs.engine import bound, results
from jobs.engine.channels import channel_name, notify
from jobs.engine.context import AckId
from jobs.engine.rows import job_row_from_task
from jobs.models import Job, JobAttempt, WorkerNode

_TABLE = Job._meta.db_table
_NODE_TABLE = WorkerNode._meta.db_table
# A claim, a start or a finish lost in a database crash only means the task runs
# again (delivery is at least once), so those single statements commit without
# waiting for the WAL flush; the task's own writes keep the server's setting.
_NO_FLUSH = "AND set_config('synchronous_commit', 'off', true) IS NOT NULL "


# -- enqueue -------------------------------------------------------------------------
_INSERT_FIELDS = [f for f in Job._meta.concrete_fields if not f.primary_key]
_INSERT_COLUMNS = ", ".join(str(f.column) for f in _INSERT_FIELDS)  # concrete: never None
_INSERT_PLACEHOLDERS = ", ".join(["%s"] * len(_INSERT_FIELDS))


def insert(job: Job, *, alias: str) -> int | None:
    """Insert ``job`` in one statement; its id, or None for a duplicate active unique key.

    It runs on the caller's connection and transaction. On PostgreSQL the same
    statement sends the queue's NOTIFY, only if a row was inserted and only at commit.
    """
    db = connections[alias]
    postgresql = db.vendor == "postgresql"
    if postgresql:
        # Every Job column is a str, int, aware datetime or None, which psycopg
        # adapts as is: the fields' get_db_prep_save would be a cost on every enqueue.
        values = [getattr(job, f.attname) for f in _INSERT_FIELDS]
    else:
        values = [f.get_db_prep_save(getattr(job, f.attname), db) for f in _INSERT_FIELDS]
    statement = (
        f"INSERT INTO {_TABLE} ({_INSERT_COLUMNS}) VALUES ({_INSERT_PLACEHOLDERS}) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    with db.cursor() as cursor:
        if postgresql:
            cursor.execute(
                f"WITH ins AS ({statement}) SELECT id, pg_notify(%s, '') FROM ins",
                [*values, channel_name(job.queue)],
            )
        else:
            cursor.execute(statement, values)
        row = cursor.fetchone()
    return row[0] if row else None


def insert_many(tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
    """Insert task packages; for a duplicate of an active unique key, that task's id."""
    alias = Conf.ORM if isinstance(Conf.ORM, str) else "default"
    if len(tasks) == 1:
        # One task: the broker's single statement (INSERT ... ON CONFLICT DO
        # NOTHING with its NOTIFY), one round trip like async_task(), instead of
        # a transaction around an INSERT and a separate NOTIFY.
        [task] = tasks
        row = job_row_from_task(task, queue=queue, payload=SignedPackage.dumps(task))
        if insert(row, alias=alias) is not None:
            return [task["id"]]
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
    return dict(
        Job.objects.using(alias)
        .filter(unique_key__in=keys, state__in=Job.ACTIVE_STATES)
        .values_list("unique_key", "task_id")
    )


# -- claim and start -----------------------------------------------------------------
@dataclass(frozen=True)
class Claimed:
    """A task this worker holds but has not started."""

    row_id: int
    payload: str
    timeout: int | None
    max_attempts: int
    attempt: int  # attempts started before this claim


def claim(*, alias: str, queue: str, node: int, by: str, limit: int) -> list[Claimed]:
    """Take up to ``limit`` ready tasks of ``queue`` for the worker ``by`` of ``node``.

    Highest priority first, then oldest. Nothing when the node is not live: a node
    declared dead claims no more (the share lock on its row orders this claim
    against ``nodes.declare_dead``).
    """
    now = timezone.now()
    if connections[alias].vendor == "postgresql":
        rows = _claim_postgresql(alias, queue=queue, node=node, by=by, limit=limit, now=now)
    else:
        rows = _claim_sqlite(alias, queue=queue, node=node, by=by, limit=limit, now=now)
    # rows: (id, payload, timeout, max_attempts, attempt, priority, run_at)
    rows.sort(key=lambda r: (-r[5], r[6], r[0]))
    return [
        Claimed(row_id=r[0], payload=r[1], timeout=r[2], max_attempts=r[3], attempt=r[4])
        for r in rows
    ]


def _claim_postgresql(
    alias: str, *, queue: str, node: int, by: str, limit: int, now: datetime
) -> list[tuple[Any, ...]]:
    sql = f"""
        WITH me AS (
            SELECT id FROM {_NODE_TABLE}
            WHERE id = %(node)s AND dead_at IS NULL AND stopped_at IS NULL
            FOR SHARE
        ), picked AS (
            SELECT id FROM {_TABLE}
            WHERE queue = %(queue)s
              AND state IN ('queued', 'retrying')
              AND run_at <= %(now)s
              AND EXISTS (SELECT 1 FROM me)
            ORDER BY priority DESC, run_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {_TABLE} AS j
        SET state = 'running', claimed_at = %(now)s, claimed_by = %(by)s,
            owner = %(node)s, started_at = NULL
        FROM picked
        WHERE j.id = picked.id {_NO_FLUSH}
        RETURNING j.id, j.payload, j.timeout, j.max_attempts, j.attempt, j.priority, j.run_at
    """
    params: dict[str, str | int | datetime] = {
        "queue": queue, "now": now, "limit": limit, "by": by, "node": node,
    }  # fmt: skip
    with bound.cursor(alias) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _claim_sqlite(
    alias: str, *, queue: str, node: int, by: str, limit: int, now: datetime
) -> list[tuple[Any, ...]]:
    # settings use transaction_mode IMMEDIATE: BEGIN takes SQLite's write lock,
    # so the checks and the update below are one serialized step across processes.
    db = connections[alias]
    stamp = db.ops.adapt_datetimefield_value(now)
    with transaction.atomic(using=alias), db.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {_NODE_TABLE} WHERE id = %s AND dead_at IS NULL AND stopped_at IS NULL",
            [node],
        )
        if cursor.fetchone() is None:
            return []
        cursor.execute(
            f"""
            SELECT id, payload, timeout, max_attempts, attempt, priority, run_at FROM {_TABLE}
            WHERE queue = %s AND state IN ('queued', 'retrying') AND run_at <= %s
            ORDER BY priority DESC, run_at, id
            LIMIT %s
            """,
            [queue, stamp, limit],
        )
        rows = list(cursor.fetchall())
        if rows:
            cursor.executemany(
                f"UPDATE {_TABLE} SET state = 'running', claimed_at = %s, claimed_by = %s, "
                "owner = %s, started_at = NULL WHERE id = %s",
                [[stamp, by, node, r[0]] for r in rows],
            )
    return rows


_START = (
    f"UPDATE {_TABLE} SET attempt = attempt + 1, started_at = %s "
    "WHERE id = %s AND owner = %s AND state = 'running' AND started_at IS NULL "
)


def start(*, alias: str, row_id: int, node: int) -> int | None:
    """Start the claimed task: its attempt number, or None when it is not ours any more."""
    db = connections[alias]
    now = timezone.now()
    if db.vendor == "postgresql":
        with bound.cursor(alias) as cursor:
            cursor.execute(_START + _NO_FLUSH + "RETURNING attempt", [now, row_id, node])
            row = cursor.fetchone()
    else:
        with db.cursor() as cursor:
            stamp = db.ops.adapt_datetimefield_value(now)
            cursor.execute(_START + "RETURNING attempt", [stamp, row_id, node])
            row = cursor.fetchone()
    return int(row[0]) if row else None


def mark_started(conn: Any, *, row_id: int, node: int) -> int | None:
    """``start`` on a plain autocommit psycopg connection (PostgreSQL; the marks thread)."""
    row = conn.execute(
        _START + _NO_FLUSH + "RETURNING attempt", [timezone.now(), row_id, node]
    ).fetchone()
    return int(row[0]) if row else None


# -- finish --------------------------------------------------------------------------
def _delete_sql(
    acks: list[AckId], owner: int | None, by: str | None, *, postgresql: bool
) -> tuple[str, list[str]]:
    # The ids and attempts are ints, written into the text; the claimer is a parameter.
    pairs = ",".join(f"({int(row_id)},{int(attempt)})" for row_id, attempt in acks)
    owned = f"owner = {int(owner)}" if owner is not None else "owner IS NULL"
    claimed = "AND claimed_by = %s " if by is not None else ""
    flush = _NO_FLUSH if postgresql else ""
    return (
        f"DELETE FROM {_TABLE} WHERE {owned} {claimed}{flush}"
        f"AND (id, attempt) IN (VALUES {pairs}) RETURNING id, attempt"
    ), ([by] if by is not None else [])


def _delete_finished(
    alias: str, acks: list[AckId], owner: int | None, by: str | None
) -> set[AckId]:
    if not acks:
        return set()
    db = connections[alias]
    sql, params = _delete_sql(acks, owner, by, postgresql=db.vendor == "postgresql")
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return {(int(r[0]), int(r[1])) for r in cursor.fetchall()}


def _delete_and_save_postgresql(
    alias: str,
    acks: list[AckId],
    kept: dict[AckId, dict[str, Any]],
    owner: int | None,
    by: str | None,
) -> set[AckId]:
    """One statement: delete the owned rows, insert the results of exactly those."""
    ordered = list(kept)
    delete, params = _delete_sql(acks, owner, by, postgresql=True)
    insert, values = results.insert_joined([kept[ack] for ack in ordered], ordered, joined="done")
    sql = f"WITH done AS ({delete}), saved AS ({insert}) SELECT id, attempt FROM done"
    with bound.cursor(alias) as cursor:
        cursor.execute(sql, [*params, *values])
        return {(int(r[0]), int(r[1])) for r in cursor.fetchall()}


def finish(
    alias: str,
    acks: list[AckId],
    tasks: dict[AckId, dict[str, Any]],
    *,
    owner: int | None,
    by: str | None = None,
    broker: Any = None,
) -> set[AckId]:
    """Finish succeeded tasks: returns the acks (row id, attempt) that were still held.

    In one transaction: delete the rows ``owner`` (and, given ``by``, this worker
    process) still holds at that attempt; for exactly those, write the results
    (``tasks``: ack -> finished task package), enqueue each chain's next link and close
    the history of a task that had failed before. After the commit, ``post_save`` for
    each result (django-q2 calls ``hook=`` from it) and the cached results. A node
    that lost a task writes nothing for it: the new attempt does. So a result, its
    hook and the next link of a chain happen once per finished task, and a crash
    before the commit only means the task runs again.
    """
    db = connections[alias]
    batch = [tasks[ack] for ack in acks if ack in tasks]
    # On PostgreSQL a batch with no chain link to enqueue and no earlier failed attempt
    # to close is one statement: it commits alone, with no transaction around it.
    alone = db.vendor == "postgresql" and not any(
        task.get("chain") or int(task.get("attempt") or 1) > 1 for task in batch
    )
    with contextlib.nullcontext() if alone else transaction.atomic(using=alias):
        kept = {ack: tasks[ack] for ack in acks if ack in tasks and results.saved(tasks[ack])}
        if kept and db.vendor == "postgresql":
            deleted = _delete_and_save_postgresql(alias, acks, kept, owner, by)
            rows = [results.result_row(task) for ack, task in kept.items() if ack in deleted]
        else:
            deleted = _delete_finished(alias, acks, owner, by)
            rows = results.save_rows(alias, [t for ack, t in kept.items() if ack in deleted])
        done = [tasks[ack] for ack in acks if ack in deleted and ack in tasks]
        results.continue_chains(done, broker)
        results.close_histories(done)
    results.send_saved(alias, rows)
    for task in done:
        if task.get("cached"):
            results.save_cached(task)
    return deleted


def finish_in_transaction(alias: str, *, row_id: int, attempt: int, owner: int | None) -> str:
    """Delete the row of a transactional task inside its own transaction.

    Returns "" when this node held that attempt, else where the row is now (the
    caller rolls the task's writes back).
    """
    owned = f"owner = {int(owner)}" if owner is not None else "owner IS NULL"
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {_TABLE} WHERE id = %s AND attempt = %s AND {owned}",
            [row_id, attempt],
        )
        if cursor.rowcount == 1:
            return ""
        cursor.execute(f"SELECT attempt, owner, state FROM {_TABLE} WHERE id = %s", [row_id])
        now = cursor.fetchone()
    if now is None:
        return "its row is gone"
    return f"its row is at attempt {now[0]}, owner {now[1]}, {now[2]}"


# -- fail ----------------------------------------------------------------------------
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"  # uuids
    r"|0x[0-9a-f]+"  # addresses
    r"|[0-9a-f]{32}"  # task ids
    r"|\d+(?:\.\d+)?",  # numbers
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def error_signature(error_type: str, message: str) -> str:
    """The error with ids, numbers and quoted values removed: equal for 'the same' error."""
    first_line = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    normalized = _VOLATILE.sub("#", _QUOTED.sub("'…'", first_line))
    return f"{error_type}: {normalized}"[:255]


@dataclass(frozen=True)
class WorkerInfo:
    cluster: str = ""
    host: str = ""
    pid: int | None = None


def fail(
    *,
    task_id: str,
    attempt: int,
    error_type: str,
    error_message: str,
    traceback: str = "",
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    retry_at: datetime | None,
    worker: WorkerInfo | None = None,
    owner: int | None = None,
) -> bool:
    """Record a failed attempt: ``retrying`` at ``retry_at``, or dead when it is None.

    ``owner``: the node reporting its own run. The report is dropped (no state
    change, no history) when the row is now someone else's: that node lost the
    task, which was handed out again with a ``WorkerLost`` attempt. Returns False
    when the row is gone or belongs to a later attempt or another node (without
    ``owner``, a report about a gone row is still written to the history). As
    django-q2 does, every failed attempt is the task's result (a ``Failure``) until
    a later attempt succeeds, and ``hook=`` runs for each.
    """
    now = finished_at or timezone.now()
    worker = worker or WorkerInfo()
    fields = {
        "last_failed_at": now,
        "last_error_type": error_type[:255],
        "last_error_message": error_message,
        "error_signature": error_signature(error_type, error_message),
        "claimed_at": None,
        "claimed_by": "",
        "started_at": None,
    }
    if retry_at is None:
        fields.update(state=Job.State.DEAD, run_at=now)
    else:
        fields.update(state=Job.State.RETRYING, run_at=retry_at)
    payload = None
    with transaction.atomic():
        job = (
            Job.objects.filter(task_id=task_id)
            .only(
                "id", "func", "job_name", "first_failed_at", "owner", "attempt", "state", "payload"
            )
            .first()
        )
        updated = 0
        if job is None and owner is not None:
            return False  # finished or discarded elsewhere: the reporting node lost it
        if job is not None:
            if owner is not None and (
                job.owner != owner or job.attempt != attempt or job.state != Job.State.RUNNING
            ):
                return False
            if job.first_failed_at is None:
                fields["first_failed_at"] = now
            current = Job.objects.filter(id=job.id, attempt=attempt)
            if owner is not None:
                current = current.filter(owner=owner, state=Job.State.RUNNING)
            updated = current.update(**fields, owner=None)
            if updated:
                payload = job.payload
        JobAttempt.objects.create(
            task_id=task_id,
            attempt=attempt,
            func=job.func if job is not None else "",
            job_name=job.job_name if job is not None else "",
            succeeded=False,
            started_at=started_at,
            finished_at=now,
            error_type=error_type[:255],
            error_message=error_message,
            traceback=traceback,
            cluster=worker.cluster[:100],
            host=worker.host[:255],
            pid=worker.pid,
        )
    if payload is not None:
        results.save_failure(
            payload,
            final=retry_at is None,
            result=f"{error_message} : {traceback}" if traceback else error_message,
            attempt=attempt,
            started=started_at,
            stopped=now,
            cluster=worker.cluster,
        )
    return updated == 1


# -- hand back and hand out ----------------------------------------------------------
# What handing a row out again needs to read.
HELD_FIELDS = (
    "id", "task_id", "attempt", "max_attempts", "func", "job_name", "queue", "started_at",
)  # fmt: skip


def _ready_state() -> Case:
    """A ready row is ``retrying`` once it has failed (the Failed tasks page lists it)."""
    return Case(
        When(last_failed_at__isnull=True, then=Value(Job.State.QUEUED)),
        default=Value(Job.State.RETRYING),
    )


def _hand_out_again(rows: Iterable[Job], *, reason: str, alias: str) -> None:
    """Make each row ready again: a started one with its lost attempt recorded (dead at
    its last attempt), one that never started as it was before its claim."""
    rows = list(rows)
    if not rows:
        return
    now = timezone.now()
    started = [r for r in rows if r.started_at is not None]
    last = [r for r in started if r.max_attempts and r.attempt >= r.max_attempts]
    again = [r for r in started if r not in last]
    unstarted = [r for r in rows if r.started_at is None]
    for job in last:
        fail(
            task_id=job.task_id,
            attempt=job.attempt,
            error_type="WorkerLost",
            error_message=f"{reason}; attempt {job.attempt} was the last allowed",
            finished_at=now,
            retry_at=None,
        )
    if again:
        JobAttempt.objects.using(alias).bulk_create(
            JobAttempt(
                task_id=job.task_id,
                attempt=job.attempt,
                func=job.func,
                job_name=job.job_name,
                succeeded=False,
                finished_at=now,
                error_type="WorkerLost",
                error_message=f"{reason}; the task was handed out again",
            )
            for job in again
        )
        Job.objects.using(alias).filter(id__in=[job.id for job in again]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by="", started_at=None
        )
    if unstarted:
        Job.objects.using(alias).filter(id__in=[job.id for job in unstarted]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by=""
        )
    if again or unstarted:
        notify(alias, {job.queue for job in again + unstarted})


def give_back(*, alias: str, node: int, row_ids: Sequence[int]) -> int:
    """Claimed tasks this worker will not start: ready again, nothing recorded."""
    if not row_ids:
        return 0
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(id__in=row_ids, owner=node, state=Job.State.RUNNING, started_at__isnull=True)
            .only(*HELD_FIELDS)
        )
        _hand_out_again(rows, reason="", alias=alias)
    return len(rows)


def worker_lost(*, alias: str, node: int, by: str, running: int | None = None) -> list[Job]:
    """The worker process ``by`` died: what it had claimed and not started goes back as
    it was; returns its started rows (their attempt failed: ``failing.lost``).

    ``running``: the row its supervisor saw it run, started even if its mark was not
    written yet (``jobs.engine.marks``).
    """
    if running:
        start(alias=alias, row_id=running, node=node)
    rows = list(
        Job.objects.using(alias)
        .filter(owner=node, claimed_by=by, state=Job.State.RUNNING)
        .only(*HELD_FIELDS)
    )
    give_back(alias=alias, node=node, row_ids=[r.id for r in rows if r.started_at is None])
    return [r for r in rows if r.started_at is not None]


def take_node(node_id: int, *, reason: str, alias: str) -> int:
    """The node is dead or stopped: hand out again every task it holds (a lost attempt
    each, nothing for an unstarted claim). Call inside the transaction that marks the
    node, so that it claims nothing more. Returns how many."""
    held = list(
        Job.objects.using(alias)
        .select_for_update()
        .filter(owner=node_id, state=Job.State.RUNNING)
        .only(*HELD_FIELDS)
        .order_by("id")
    )
    _hand_out_again(held, reason=reason, alias=alias)
    return len(held)


def rescue_ownerless(*, cutoff: datetime, alias: str) -> int:
    """Running rows with no owner claimed before ``cutoff``: lost, hand them out."""
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update(skip_locked=True)
            .filter(state=Job.State.RUNNING, owner__isnull=True, claimed_at__lt=cutoff)
            .only(*HELD_FIELDS)
            .order_by("id")[:500]
        )
        _hand_out_again(rows, reason="its worker predates node ownership", alias=alias)
    return len(rows)


# -- progress ------------------------------------------------------------------------
def set_progress(*, task_id: str, done: int, total: int | None, message: str) -> None:
    Job.objects.filter(task_id=task_id, state=Job.State.RUNNING).update(
        progress_done=done,
        progress_total=total,
        progress_message=message[:255],
        progress_updated_at=timezone.now(),
    )


# -- operators -----------------------------------------------------------------------
def requeue_failed(*, row_ids: Collection[int], budget: int) -> list[int]:
    """Failed rows of ``row_ids`` queued to run now, with ``budget`` more attempts.

    Call inside a transaction; the rows are locked first, so a row the queue claims
    meanwhile (a retrying one) is neither counted nor changed. Returns the ids changed.
    """
    rows = Job.objects.filter(id__in=row_ids, state__in=Job.FAILED_STATES)
    locked = sorted(rows.select_for_update().values_list("id", flat=True))
    Job.objects.filter(id__in=locked).update(
        state=Job.State.QUEUED,
        run_at=timezone.now(),
        max_attempts=F("attempt") + budget,
        claimed_at=None,
        claimed_by="",
    )
    return locked


def delete_waiting(*, row_ids: Collection[int], states: Collection[str]) -> list[int]:
    """Delete the rows of ``row_ids`` in ``states`` (never a running one).

    Call inside a transaction; the rows are locked first: the queue claims with
    ``SKIP LOCKED``, so a row is either deleted or claimed, never counted as deleted
    and run. Returns the ids deleted.
    """
    states = [s for s in states if s != Job.State.RUNNING]
    rows = Job.objects.filter(id__in=row_ids, state__in=states)
    locked = sorted(rows.select_for_update().values_list("id", flat=True))
    Job.objects.filter(id__in=locked).delete()
    return locked


def purge_queue(*, queue: str, alias: str) -> int:
    """Delete the tasks waiting in ``queue`` (not running ones, not failed ones)."""
    deleted, _ = (
        Job.objects.using(alias)
        .filter(queue=queue, state__in=[Job.State.QUEUED, Job.State.RETRYING])
        .delete()
    )
    return deleted
