"""Every change of a task's ``jobs.Job`` row, and only here.

The row is the task while it is queued, running or failed; a finished task's row is
deleted (its result and history live in django-q2's ``Task`` and in ``JobAttempt``).

=============  =======================================  ===============================
transition     function                                 row
=============  =======================================  ===============================
enqueue        ``insert``, ``insert_many``              new: ``queued``
claim          ``claim``, ``claim_limited``             ``queued``/``retrying`` ->
                                                        ``running``, owner and claimer
                                                        stamped, not started; a rated
                                                        task's start in ``RateStart``
start          ``start``, ``mark_started``              ``attempt`` + 1, ``started_at``
finish         ``finish``, ``finish_in_transaction``    deleted (result written)
fail           ``fail``                                 -> ``retrying`` at its backoff,
                                                        or ``dead``; one ``JobAttempt``
hand back      ``give_back``, ``worker_lost``,          unstarted claim: ready again,
               ``give_back_waiting``                    nothing recorded
hand out       ``take_node``, ``rescue_ownerless``      started on a lost node: one
                                                        ``WorkerLost`` attempt, then
                                                        ready again (dead at its last)
progress       ``set_progress``                         ``progress_*`` of a running task
retry          ``requeue_failed``                       ``retrying``/``dead``/``cancelled``
                                                        /``expired`` -> ``queued`` with a
                                                        fresh attempt budget
delete         ``delete_waiting``, ``purge_queue``      removed by an operator
reclaim        ``vacuum``                               dead row versions reclaimed
cancel         ``cancel``                               waiting -> ``cancelled`` now;
                                                        running: cancel requested
               ``cancel_unstarted``, ``cancel_ended``   a requested one -> ``cancelled``
snooze         ``snooze``                               ``running`` -> ready later,
                                                        attempt given back, ``snoozes`` + 1
expire         ``expire_claimed``, ``expire_due``       past ``expires_at`` unstarted ->
                                                        ``expired`` (never run)
batch          ``insert_batch``                         a ``JobBatch`` and its members
=============  =======================================  ===============================

``dead``, ``cancelled`` and ``expired`` are final: the row stays until an operator
retries or discards it. A batch member's end (success, dead, cancelled, expired) is
counted in its ``JobBatch`` in the transaction of that final change, and the one
that counts the last member enqueues the batch's callbacks there too (``_count_ended``):
they run once, whatever crashes.

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
import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.conf import Conf
from django_q.signing import SignedPackage

from jobs.engine import bound, limits, results
from jobs.engine.channels import LIMITED, cancel_channel, channel_name, notify
from jobs.engine.context import AckId
from jobs.engine.rows import callback_row, job_row_from_task
from jobs.engine.specs import MAX_RATE_SECONDS
from jobs.models import Job, JobAttempt, JobBatch, RateStart, WorkerNode

_TABLE = Job._meta.db_table
_NODE_TABLE = WorkerNode._meta.db_table
_RATE_TABLE = RateStart._meta.db_table
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
                f"WITH ins AS ({statement}) SELECT id, pg_notify(%s, %s) FROM ins",
                [*values, channel_name(job.queue), _payload([job])],
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
        notify(alias, [queue], payload=_payload(rows))
    return [
        active.get(row.unique_key, row.task_id) if row.unique_key else row.task_id for row in rows
    ]


def _payload(rows: Iterable[Job]) -> str:
    """The NOTIFY payload for these rows: ``LIMITED`` when one has a limit."""
    limited = any(r.limit_key is not None or r.rate_key is not None for r in rows)
    return LIMITED if limited else ""


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
    # Rate-limited: its start is written before it runs, and moves its RateStart to then.
    rated: bool = False


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


# The claim's statement, kept with its plan by the server (migration 0017).
_CLAIM_POSTGRESQL = "SELECT * FROM jobs_claim(%(queue)s, %(now)s, %(node)s, %(by)s, %(limit)s)"


def _claim_postgresql(
    alias: str, *, queue: str, node: int, by: str, limit: int, now: datetime
) -> list[tuple[Any, ...]]:
    params: dict[str, str | int | datetime] = {
        "queue": queue, "now": now, "limit": limit, "by": by, "node": node,
    }  # fmt: skip
    with bound.cursor(alias) as cursor:
        cursor.execute(_CLAIM_POSTGRESQL, params)
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
            WHERE queue = %s AND state IN ('queued', 'retrying')
              AND limit_key IS NULL AND rate_key IS NULL AND run_at <= %s
            ORDER BY priority DESC, run_at, id
            LIMIT %s
            """,
            [queue, stamp, limit],
        )
        rows = list(cursor.fetchall())
        _mark_claimed_sqlite(cursor, rows, stamp=stamp, by=by, node=node)
    return rows


def _mark_claimed_sqlite(
    cursor: Any, rows: Sequence[Sequence[Any]], *, stamp: Any, by: str, node: int
) -> None:
    if rows:
        cursor.executemany(
            f"UPDATE {_TABLE} SET state = 'running', claimed_at = %s, claimed_by = %s, "
            "owner = %s, started_at = NULL WHERE id = %s",
            [[stamp, by, node, r[0]] for r in rows],
        )


# -- claim with flow control (jobs.engine.limits) -------------------------------------
# Advisory locks of the limits' keys live in their own space (the two-integer form).
_LOCK_SPACE = 0x7461626C


@dataclass(frozen=True)
class LimitedClaim:
    claimed: list[Claimed]
    took: int  # of them, tasks with a limit
    found: int  # ready tasks with a limit this claim looked at
    retry_in: float | None  # seconds until a rate window frees a start a task waits for


def claim_limited(
    *, alias: str, queue: str, node: int, by: str, limit: int, queue_limit: int | None
) -> LimitedClaim:
    """``claim``, with every limit enforced: the ready tasks with a limit first (those the
    limits allow, ``limits.choose``), then tasks without one up to ``limit``, all within
    ``queue_limit`` (the queue's own limit) when given.

    On PostgreSQL it is one function call (``jobs_claim_limited``): it locks its
    candidates (``SKIP LOCKED``: a concurrent claimer looks at the next ones), takes a
    transaction-level advisory lock per key in hash order (so two claimers never wait on
    each other in a cycle), and counts what runs under those keys with a fresh snapshot
    taken after the locks. Two claimers of a key near its limit are thus serialized from
    the count to their commit: both cannot take the last slot. On SQLite the write lock
    (``BEGIN IMMEDIATE``) serializes the whole claim.
    """
    now = timezone.now()
    postgresql = connections[alias].vendor == "postgresql"
    run = _claim_limited_postgresql if postgresql else _claim_limited_sqlite
    rows, found, retry_in = run(
        alias, queue=queue, node=node, by=by, limit=limit, now=now, queue_limit=queue_limit
    )
    # rows: (id, payload, timeout, max_attempts, attempt, priority, run_at, limited, rated)
    rows.sort(key=lambda r: (not r[7], -r[5], r[6], r[0]))
    claimed = [
        Claimed(
            row_id=r[0], payload=r[1], timeout=r[2], max_attempts=r[3], attempt=r[4],
            rated=bool(r[8]),
        )
        for r in rows
    ]  # fmt: skip
    took = sum(1 for r in rows if r[7])
    return LimitedClaim(claimed=claimed, took=took, found=found, retry_in=retry_in)


def limited_ready(*, alias: str, queue: str) -> bool:
    """Whether ``queue`` has a ready task with a limit (a probe of its partial index): a
    worker that found none last time asks this before the claim with limits."""
    db = connections[alias]
    now = db.ops.adapt_datetimefield_value(timezone.now())
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {_TABLE} WHERE queue = %s "
            "AND state IN ('queued', 'retrying') AND run_at <= %s "
            "AND (limit_key IS NOT NULL OR rate_key IS NOT NULL))",
            [queue, now],
        )
        return bool(cursor.fetchone()[0])


_LIMITED_READY = (
    "queue = %(queue)s AND state IN ('queued', 'retrying') AND run_at <= %(now)s "
    "AND (limit_key IS NOT NULL OR rate_key IS NOT NULL) "
    # A key already at its concurrency limit would only fill the scan with blocked rows.
    f"AND (limit_key IS NULL OR limit_key NOT IN (SELECT limit_key FROM {_TABLE} "
    "WHERE state = 'running' AND limit_key IS NOT NULL "
    "GROUP BY limit_key HAVING count(*) >= max(limit_max)))"
)
_CANDIDATE_COLUMNS = "id, limit_key, limit_max, rate_key, rate_max, rate_seconds"


def _candidates(rows: Iterable[Sequence[Any]]) -> list[limits.Candidate]:
    return [
        limits.Candidate(row_id=r[0], limit_key=r[1], limit_max=r[2], rate_key=r[3], rate_max=r[4])
        for r in rows
    ]


def _usage(counts: Iterable[Sequence[Any]]) -> tuple[limits.Usage, dict[str, datetime]]:
    """From the count rows ``(kind, key, count, oldest start)``: the usage, and the oldest
    start in each rate key's window."""
    running: dict[str, int] = {}
    started: dict[str, int] = {}
    oldest: dict[str, datetime] = {}
    queue_running = 0
    for kind, key, count, first in counts:
        if kind == "c":
            running[key] = int(count)
        elif kind == "r":
            started[key] = int(count)
            if first is not None:
                oldest[key] = first
        elif kind == "q":
            queue_running = int(count)
    return limits.Usage(running=running, started=started, queue_running=queue_running), oldest


def _choose(
    candidates: list[limits.Candidate],
    counts: Iterable[Sequence[Any]],
    *,
    windows: dict[str, float],
    now: datetime,
    limit: int,
    queue_limit: int | None,
) -> tuple[limits.Choice, float | None]:
    """What to claim, and when the first full rate window that holds a candidate back
    frees a start (seconds from ``now``, by the clock that stamped the starts)."""
    usage, oldest = _usage(counts)
    choice = limits.choose(candidates, usage, batch=limit, queue_limit=queue_limit)
    chosen = set(choice.row_ids)
    waits = [
        (oldest[c.rate_key] - now).total_seconds() + windows[c.rate_key]
        for c in candidates
        if c.row_id not in chosen
        and c.rate_key is not None
        and c.rate_key in oldest
        and c.rate_max is not None
        and usage.started.get(c.rate_key, 0) >= c.rate_max
    ]
    return choice, (min(waits) if waits else None)


# The claim with limits on PostgreSQL: a function (migration 0016) whose plans the
# server keeps for the session; its docstring and docs/broker.md say how its locks and
# counts work.
_CLAIM_LIMITED_POSTGRESQL = (
    "SELECT * FROM jobs_claim_limited(%(queue)s, %(now)s, %(node)s, %(by)s, %(batch)s, "
    "%(scan)s, %(share)s, %(loose)s, %(space)s, %(queue_key)s, %(queue_limit)s)"
)


def _claim_limited_postgresql(
    alias: str,
    *,
    queue: str,
    node: int,
    by: str,
    limit: int,
    now: datetime,
    queue_limit: int | None,
) -> tuple[list[tuple[Any, ...]], int, float | None]:
    params = {
        "queue": queue, "now": now, "scan": limits.scan(limit), "space": _LOCK_SPACE,
        "queue_key": f"queue:{queue}" if queue_limit is not None else None,
        "queue_limit": queue_limit, "batch": limit, "node": node, "by": by,
        "loose": limits.LOOSE, "share": limits.SHARE,
    }  # fmt: skip
    with bound.cursor(alias) as cursor:
        cursor.execute(_CLAIM_LIMITED_POSTGRESQL, params)
        rows = cursor.fetchall()
    claimed = [r[:9] for r in rows if r[0] is not None]
    [info] = [r for r in rows if r[0] is None]
    return claimed, int(info[9]), (float(info[10]) if info[10] is not None else None)


def _claim_limited_sqlite(
    alias: str,
    *,
    queue: str,
    node: int,
    by: str,
    limit: int,
    now: datetime,
    queue_limit: int | None,
) -> tuple[list[tuple[Any, ...]], int, float | None]:
    db = connections[alias]
    stamp = db.ops.adapt_datetimefield_value(now)
    params = {"queue": queue, "now": stamp, "scan": limits.scan(limit)}
    # settings use transaction_mode IMMEDIATE: the write lock serializes whole claims.
    with transaction.atomic(using=alias), db.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {_NODE_TABLE} WHERE id = %s AND dead_at IS NULL AND stopped_at IS NULL",
            [node],
        )
        if cursor.fetchone() is None:
            return [], 0, None
        cursor.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM {_TABLE} WHERE {_LIMITED_READY} "
            "ORDER BY priority DESC, run_at, id LIMIT %(scan)s",
            params,
        )
        picked = list(cursor.fetchall())
        candidates = _candidates(picked)
        windows = {r[3]: float(r[5]) for r in picked if r[3] is not None}
        counts: list[tuple[Any, ...]] = []
        for key in sorted({c.limit_key for c in candidates if c.limit_key is not None}):
            cursor.execute(
                f"SELECT count(*) FROM {_TABLE} WHERE state = 'running' AND limit_key = %s",
                [key],
            )
            counts.append(("c", key, cursor.fetchone()[0], None))
        for key, seconds in windows.items():
            cutoff = db.ops.adapt_datetimefield_value(now - timedelta(seconds=seconds))
            cursor.execute(
                f"DELETE FROM {_RATE_TABLE} WHERE key = %s AND started_at <= %s", [key, cutoff]
            )
            cursor.execute(
                f"SELECT count(*), min(started_at) FROM {_RATE_TABLE} WHERE key = %s", [key]
            )
            count, first = cursor.fetchone()
            first = _aware(db, first)
            counts.append(("r", key, count, first))
        if queue_limit is not None:
            cursor.execute(
                f"SELECT count(*) FROM {_TABLE} WHERE state = 'running' AND queue = %s", [queue]
            )
            counts.append(("q", "", cursor.fetchone()[0], None))
        choice, retry_in = _choose(
            candidates, counts, windows=windows, now=now, limit=limit, queue_limit=queue_limit
        )
        rows: list[tuple[Any, ...]] = []
        if choice.row_ids:
            marks = ", ".join(["%s"] * len(choice.row_ids))
            cursor.execute(
                "SELECT id, payload, timeout, max_attempts, attempt, priority, run_at, 1, "
                f"rate_key FROM {_TABLE} WHERE id IN ({marks})",
                choice.row_ids,
            )
            limited = list(cursor.fetchall())
            rows += [(*r[:8], r[8] is not None) for r in limited]
            cursor.executemany(
                f"INSERT INTO {_RATE_TABLE} (key, started_at, job) VALUES (%s, %s, %s)",
                [[r[8], stamp, r[0]] for r in limited if r[8] is not None],
            )
        if choice.room:
            cursor.execute(
                "SELECT id, payload, timeout, max_attempts, attempt, priority, run_at, 0, 0 "
                f"FROM {_TABLE} WHERE queue = %s AND state IN ('queued', 'retrying') "
                "AND limit_key IS NULL AND rate_key IS NULL AND run_at <= %s "
                "ORDER BY priority DESC, run_at, id LIMIT %s",
                [queue, stamp, choice.room],
            )
            rows += list(cursor.fetchall())
        _mark_claimed_sqlite(cursor, rows, stamp=stamp, by=by, node=node)
    return [(*r[:7], bool(r[7]), bool(r[8])) for r in rows], len(picked), retry_in


def _aware(db: Any, value: Any) -> datetime | None:
    """A datetime SQLite returned as text, as the aware datetime Django would make."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


_START = (
    f"UPDATE {_TABLE} SET attempt = attempt + 1, started_at = %s "
    "WHERE id = %s AND owner = %s AND state = 'running' AND started_at IS NULL "
)


def start(*, alias: str, row_id: int, node: int, rated: bool = False) -> int | None:
    """Start the claimed task: its attempt number, or None when it is not ours any more.

    ``rated``: the task's ``RateStart`` (written at its claim, counted from then on)
    moves to this moment, so that a rate window counts starts, not claims.
    """
    db = connections[alias]
    now = timezone.now()
    if db.vendor == "postgresql":
        if rated:
            sql = (
                f"WITH s AS ({_START} RETURNING attempt), "
                f"r AS (UPDATE {_RATE_TABLE} SET started_at = clock_timestamp() "
                "WHERE job = %s AND EXISTS (SELECT 1 FROM s)) SELECT attempt FROM s"
            )
            params: list[Any] = [now, row_id, node, row_id]
        else:
            sql, params = _START + _NO_FLUSH + "RETURNING attempt", [now, row_id, node]
        with bound.cursor(alias) as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    else:
        with db.cursor() as cursor:
            stamp = db.ops.adapt_datetimefield_value(now)
            cursor.execute(_START + "RETURNING attempt", [stamp, row_id, node])
            row = cursor.fetchone()
            if rated and row:
                cursor.execute(
                    f"UPDATE {_RATE_TABLE} SET started_at = %s WHERE job = %s", [stamp, row_id]
                )
    return int(row[0]) if row else None


def mark_started(conn: Any, *, row_id: int, node: int) -> int | None:
    """``start`` on a plain autocommit psycopg connection (PostgreSQL; the marks thread)."""
    row = conn.execute(
        _START + _NO_FLUSH + "RETURNING attempt", [timezone.now(), row_id, node]
    ).fetchone()
    return int(row[0]) if row else None


# -- finish --------------------------------------------------------------------------
# Only a slot of a key that was full wakes anyone: no claimer waits on a key below its
# limit (a claim that takes nothing because of limits finds every key it saw full).
# On PostgreSQL the statement's snapshot still sees the rows it deletes as running, so
# the count includes them (SQLite's RETURNING sees them gone; it has no NOTIFY anyway).
_FREED = (
    f"CASE WHEN {_TABLE}.limit_key IS NOT NULL AND (SELECT count(*) FROM {_TABLE} AS r "
    f"WHERE r.state = 'running' AND r.limit_key = {_TABLE}.limit_key) >= {_TABLE}.limit_max "
    "THEN queue END AS freed"
)


def _delete_sql(acks: list[AckId], owner: int | None, by: str | None) -> tuple[str, list[str]]:
    """The DELETE of the rows ``owner`` (and ``by``) still hold at these attempts."""
    # The ids and attempts are ints, written into the text; the claimer is a parameter.
    pairs = ",".join(f"({int(row_id)},{int(attempt)})" for row_id, attempt in acks)
    owned = f"owner = {int(owner)}" if owner is not None else "owner IS NULL"
    claimed = "AND claimed_by = %s " if by is not None else ""
    return (
        f"DELETE FROM {_TABLE} WHERE {owned} {claimed}AND (id, attempt) IN (VALUES {pairs}) "
    ), ([by] if by is not None else [])


# The deleted rows (row id, attempt), and the queues of the keys whose slots they freed.
_Deleted = tuple[set[AckId], set[str]]


def _split(rows: Iterable[Sequence[Any]]) -> _Deleted:
    deleted = {(int(r[0]), int(r[1])) for r in rows if r[0] is not None}
    return deleted, {str(r[2]) for r in rows if r[2] is not None}


def _delete_finished_sqlite(
    alias: str, acks: list[AckId], owner: int | None, by: str | None
) -> _Deleted:
    if not acks:
        return set(), set()
    delete, params = _delete_sql(acks, owner, by)
    # SQLite has no NOTIFY (its workers poll): a freed slot wakes no one there.
    with connections[alias].cursor() as cursor:
        cursor.execute(f"{delete}RETURNING id, attempt, NULL", params)
        return _split(cursor.fetchall())


# The finish's statement, kept with its plan by the server (migration 0017): the rows
# and their attempts, then the result columns (results.RESULT_COLUMNS) and the ack each
# result row belongs to.
_FINISH_POSTGRESQL = (
    "SELECT * FROM jobs_finish(%b::bigint, %b::text, %b::bigint[], %b::int[], "
    + ", ".join(f"%b::{kind}[]" for kind in results.RESULT_COLUMNS.values())
    + ", %b::bigint[], %b::int[])"
)


def _finish_postgresql(
    alias: str,
    acks: list[AckId],
    kept: dict[AckId, dict[str, Any]],
    owner: int | None,
    by: str | None,
) -> _Deleted:
    """One call: delete the owned rows, insert the results of exactly those."""
    params = [
        owner, by, [a[0] for a in acks], [a[1] for a in acks],
        *results.column_arrays(list(kept.values())),
        [a[0] for a in kept], [a[1] for a in kept],
    ]  # fmt: skip
    with bound.cursor(alias) as cursor:
        cursor.execute(_FINISH_POSTGRESQL, params)
        return _split(cursor.fetchall())


def finish(
    alias: str,
    acks: list[AckId],
    tasks: dict[AckId, dict[str, Any]],
    *,
    owner: int | None,
    by: str | None = None,
    broker: Any = None,
    freed: set[str] | None = None,
) -> set[AckId]:
    """Finish succeeded tasks: returns the acks (row id, attempt) that were still held.

    A finished task of a key that was at its concurrency limit frees a slot: its queue's
    workers are woken (``LIMITED``), or, given ``freed``, the queue is added to it for
    the caller to wake (a worker about to claim takes the slot itself first).

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
        task.get("chain") or int(task.get("attempt") or 1) > 1 or task.get("batch")
        for task in batch
    )
    with contextlib.nullcontext() if alone else transaction.atomic(using=alias):
        kept = {ack: tasks[ack] for ack in acks if ack in tasks and results.saved(tasks[ack])}
        if db.vendor == "postgresql":
            deleted, full = _finish_postgresql(alias, acks, kept, owner, by)
            rows = [results.result_row(task) for ack, task in kept.items() if ack in deleted]
        else:
            deleted, full = _delete_finished_sqlite(alias, acks, owner, by)
            rows = results.save_rows(alias, [t for ack, t in kept.items() if ack in deleted])
        if freed is not None:
            freed |= full
        elif full:
            notify(alias, full, payload=LIMITED)
        done = [tasks[ack] for ack in acks if ack in deleted and ack in tasks]
        results.continue_chains(done, broker)
        results.close_histories(done)
        members = [t["batch"] for t in done if isinstance(t.get("batch"), int)]
        if members:
            _count_ended(alias, {(batch, SUCCEEDED): n for batch, n in Counter(members).items()})
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
            f"DELETE FROM {_TABLE} WHERE id = %s AND attempt = %s AND {owned} "
            f"RETURNING batch, {_FREED}",
            [row_id, attempt],
        )
        deleted = cursor.fetchone()
        if deleted is not None:
            if deleted[0] is not None:
                _count_ended(alias, {(int(deleted[0]), SUCCEEDED): 1})
            if deleted[1] is not None:
                notify(alias, [deleted[1]], payload=LIMITED)
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
                "id", "func", "job_name", "first_failed_at", "owner", "attempt", "state",
                "payload", "batch", "cancel_requested_at", "cancelled_by", "queue", "limit_key",
            )
            .first()
        )  # fmt: skip
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
            if job.cancel_requested_at is not None:
                # Asked to stop: however the attempt ended, the task ends cancelled.
                retry_at = None
                fields.update(_cancelled_fields(job.cancelled_by, now, ended=error_type))
            current = Job.objects.filter(id=job.id, attempt=attempt)
            if owner is not None:
                current = current.filter(owner=owner, state=Job.State.RUNNING)
            updated = current.update(**fields, owner=None)
            if updated:
                payload = job.payload
                if job.batch is not None and retry_at is None:
                    _count_ended(Job.objects.db, {(job.batch, str(fields["state"])): 1})
                if job.limit_key is not None and job.state == Job.State.RUNNING:
                    notify(DEFAULT_DB_ALIAS, [job.queue], payload=LIMITED)  # a slot freed
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
    "cancel_requested_at", "cancelled_by", "batch", "payload", "first_failed_at",
    "limit_key", "rate_key",
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
    requested = [r for r in rows if r.cancel_requested_at is not None]
    if requested:
        # Asked to stop: a lost run of a task an operator cancelled ends it cancelled.
        _record_lost(alias, [r for r in requested if r.started_at is not None], reason, now)
        for job in requested:
            _end(alias, [job], state=Job.State.CANCELLED, now=now, by=job.cancelled_by,
                 ended="WorkerLost")  # fmt: skip
        rows = [r for r in rows if r.cancel_requested_at is None]
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
        _record_lost(alias, again, f"{reason}; the task was handed out again", now)
        Job.objects.using(alias).filter(id__in=[job.id for job in again]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by="", started_at=None
        )
    if unstarted:
        Job.objects.using(alias).filter(id__in=[job.id for job in unstarted]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by=""
        )
    if again or unstarted:
        notify(alias, {job.queue for job in again + unstarted}, payload=_payload(again + unstarted))


def _record_lost(alias: str, rows: list[Job], message: str, now: datetime) -> None:
    JobAttempt.objects.using(alias).bulk_create(
        JobAttempt(
            task_id=job.task_id,
            attempt=job.attempt,
            func=job.func,
            job_name=job.job_name,
            succeeded=False,
            finished_at=now,
            error_type="WorkerLost",
            error_message=message,
        )
        for job in rows
    )


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


# Ready again as before the claim: only rows this worker holds unstarted and nobody asked
# to cancel (the worker ends those itself, as it would have).
_GIVE_BACK_WAITING = (
    f"UPDATE {_TABLE} SET owner = NULL, claimed_at = NULL, claimed_by = '', "
    "state = CASE WHEN last_failed_at IS NULL THEN %s ELSE %s END "
    "WHERE id = ANY(%s) AND owner = %s AND claimed_by = %s AND state = 'running' "
    "AND started_at IS NULL AND cancel_requested_at IS NULL "
    "RETURNING id, queue, (limit_key IS NOT NULL OR rate_key IS NOT NULL)"
)


def give_back_waiting(conn: Any, *, node: int, by: str, row_ids: Sequence[int]) -> set[int]:
    """``give_back`` on a plain autocommit psycopg connection (PostgreSQL; the marks
    thread): the tasks a worker claimed behind one that runs long. The ids given back."""
    states = [Job.State.QUEUED.value, Job.State.RETRYING.value]
    with conn.transaction():
        rows = conn.execute(_GIVE_BACK_WAITING, [*states, list(row_ids), node, by]).fetchall()
        limited: dict[str, bool] = {}
        for _row_id, queue, has_limit in rows:
            limited[queue] = limited.get(queue, False) or has_limit
        for queue, has_limit in sorted(limited.items()):
            payload = LIMITED if has_limit else ""
            conn.execute("SELECT pg_notify(%s, %s)", [channel_name(queue), payload])
    return {int(row[0]) for row in rows}


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


def prune_rate_starts() -> int:
    """Rate starts older than the longest window (a claim prunes its own keys; this
    catches the keys no task uses any more). How many were deleted."""
    cutoff = timezone.now() - timedelta(seconds=MAX_RATE_SECONDS)
    deleted, _ = RateStart.objects.filter(started_at__lt=cutoff).delete()
    return deleted


# -- progress ------------------------------------------------------------------------
def set_progress(*, task_id: str, done: int, total: int | None, message: str) -> None:
    Job.objects.filter(task_id=task_id).update(
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
    locked = list(rows.select_for_update().values_list("id", "state", "batch").order_by("id"))
    ids = [row_id for row_id, _state, _batch in locked]
    Job.objects.filter(id__in=ids).update(
        state=Job.State.QUEUED,
        run_at=timezone.now(),
        max_attempts=F("attempt") + budget,
        claimed_at=None,
        claimed_by="",
        # A retried task runs: its deadline and any cancel are the past's.
        expires_at=None,
        cancel_requested_at=None,
        cancel_grace=None,
    )
    # A batch member that had ended runs again: its end is counted again when it comes
    # (a batch whose callbacks ran does not run them twice).
    reopened = Counter(
        (batch, state)
        for _id, state, batch in locked
        if batch is not None and state in Job.FINAL_STATES
    )
    if reopened:
        _count_ended(Job.objects.db, {key: -n for key, n in reopened.items()})
    return ids


def delete_waiting(*, row_ids: Collection[int], states: Collection[str]) -> list[int]:
    """Delete the rows of ``row_ids`` in ``states`` (never a running one).

    Call inside a transaction; the rows are locked first: the queue claims with
    ``SKIP LOCKED``, so a row is either deleted or claimed, never counted as deleted
    and run. Returns the ids deleted.
    """
    states = [s for s in states if s != Job.State.RUNNING]
    rows = Job.objects.filter(id__in=row_ids, state__in=states)
    locked = list(rows.select_for_update().values_list("id", "state", "batch").order_by("id"))
    Job.objects.filter(id__in=[row_id for row_id, _state, _batch in locked]).delete()
    _count_deleted(Job.objects.db, locked)
    return [row_id for row_id, _state, _batch in locked]


def _count_deleted(alias: str, rows: Iterable[tuple[int, str, int | None]]) -> None:
    """A batch member deleted before it ended counts as cancelled: its batch still ends."""
    gone = Counter(
        (batch, str(Job.State.CANCELLED))
        for _id, state, batch in rows
        if batch is not None and state not in Job.FINAL_STATES
    )
    if gone:
        _count_ended(alias, dict(gone))


def purge_queue(*, queue: str, alias: str) -> int:
    """Delete the tasks waiting in ``queue`` (not running ones, not failed ones)."""
    with transaction.atomic(using=alias):
        waiting = Job.objects.using(alias).filter(
            queue=queue, state__in=[Job.State.QUEUED, Job.State.RETRYING]
        )
        members = list(
            waiting.filter(batch__isnull=False)
            .select_for_update()
            .values_list("id", "state", "batch")
        )
        deleted, _ = waiting.delete()
        _count_deleted(alias, members)
    return deleted


# -- reclaim -------------------------------------------------------------------------
# Two sessions vacuuming the table at once would queue on its lock: one does it.
_VACUUM_LOCK = 0x7AB1_0001


@dataclass(frozen=True)
class Vacuumed:
    dead_rows: int
    live_rows: int
    seconds: float


def vacuum(*, min_dead_rows: int, alias: str = "default") -> Vacuumed | None:
    """``VACUUM (ANALYZE)`` the table when it holds ``min_dead_rows`` dead row versions
    and more than a fifth of its live rows (PostgreSQL; None when it was not needed).

    Each task leaves dead versions behind (its claim's update, its finish's delete).
    Autovacuum reclaims them where it runs and keeps up; where it is off or lags, the
    table and its claim index would grow with every task and claims slow down.
    """
    db = connections[alias]
    if db.vendor != "postgresql" or min_dead_rows <= 0 or db.in_atomic_block:
        return None
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass",
            [_TABLE],
        )
        row = cursor.fetchone()
        live, dead = (int(row[0]), int(row[1])) if row else (0, 0)
        if dead < max(min_dead_rows, live // 5):
            return None
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_VACUUM_LOCK])
        if not cursor.fetchone()[0]:
            return None
        try:
            started = time.monotonic()
            cursor.execute(f"VACUUM (ANALYZE) {db.ops.quote_name(_TABLE)}")
            return Vacuumed(dead_rows=dead, live_rows=live, seconds=time.monotonic() - started)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_VACUUM_LOCK])


# -- flow control: cancel, snooze, expire ------------------------------------------------
# A batch's counters, by the name of the member's end.
SUCCEEDED = "succeeded"
_ENDS = {
    SUCCEEDED: "succeeded",
    Job.State.DEAD: "dead",
    Job.State.CANCELLED: "cancelled",
    Job.State.EXPIRED: "expired",
}
_END_FIELDS = ("id", "task_id", "attempt", "batch", "payload", "first_failed_at", "queue")


def _cancelled_fields(by: str, now: datetime, *, ended: str = "") -> dict[str, Any]:
    message = f"cancelled by {by or 'an operator'}"
    if ended:
        message += f" (its attempt ended with {ended})"
    return {
        "state": Job.State.CANCELLED,
        "run_at": now,
        "last_failed_at": now,
        "last_error_type": "Cancelled",
        "last_error_message": message,
        "error_signature": "Cancelled",
    }


def _expired_fields(now: datetime) -> dict[str, Any]:
    return {
        "state": Job.State.EXPIRED,
        "run_at": now,
        "last_failed_at": now,
        "last_error_type": "Expired",
        "last_error_message": "not started before its deadline (expires): never run",
        "error_signature": "Expired",
    }


def _end(
    alias: str,
    rows: Sequence[Job],
    *,
    state: str,
    now: datetime,
    by: str = "",
    ended: str = "",
) -> None:
    """End locked ``rows`` (``_END_FIELDS`` read) cancelled or expired: the row kept like
    a dead one, its batch counted, its ``Failure`` result written with them (its hook
    runs once committed)."""
    if not rows:
        return
    if state == Job.State.CANCELLED:
        fields = _cancelled_fields(by, now, ended=ended)
        fields.update(cancel_requested_at=Coalesce(F("cancel_requested_at"), Value(now)))
        if by:
            fields.update(cancelled_by=by[:150])
    else:
        fields = _expired_fields(now)
    Job.objects.using(alias).filter(id__in=[row.id for row in rows]).update(
        **fields,
        first_failed_at=Coalesce(F("first_failed_at"), Value(now)),
        owner=None,
        claimed_at=None,
        claimed_by="",
        started_at=None,
    )
    ends = Counter((row.batch, state) for row in rows if row.batch is not None)
    if ends:
        _count_ended(alias, dict(ends))
    # django-q2's view of a task that ended without success: a final ``Failure``.
    for row in rows:
        results.save_failure(
            row.payload,
            final=True,
            result=str(fields["last_error_message"]),
            attempt=row.attempt,
            started=None,
            stopped=now,
        )


def _count_ended(alias: str, ends: dict[tuple[int, str], int]) -> None:
    """Count members' ends in their batches, in the caller's transaction; the one
    that counts a batch's last member enqueues its callbacks in that transaction."""
    by_batch: dict[int, dict[str, int]] = {}
    for (batch, state), n in ends.items():
        column = _ENDS[state]
        by_batch.setdefault(batch, {})[column] = by_batch.get(batch, {}).get(column, 0) + n
    # Always in id order: two transactions ending members of two batches never deadlock.
    for batch_id in sorted(by_batch):
        counts = by_batch[batch_id]
        # The UPDATE locks the batch row until commit: the read below is this
        # transaction's, and only one transaction sees the last member counted.
        JobBatch.objects.using(alias).filter(id=batch_id).update(
            **{column: F(column) + n for column, n in counts.items()}
        )
        found = JobBatch.objects.using(alias).filter(id=batch_id, finished_at__isnull=True).first()
        if found is not None and found.ended >= found.total:
            _close_batch(alias, found)


def _close_batch(alias: str, batch: JobBatch) -> None:
    summary = batch_summary(batch)
    outcome = batch.on_success if batch.succeeded == batch.total else batch.on_failure
    callback_ids = []
    for func in (outcome, batch.on_finish):
        if func:
            row = callback_row(func, summary)
            insert(row, alias=alias)
            callback_ids.append(row.task_id)
    JobBatch.objects.using(alias).filter(id=batch.id).update(
        finished_at=timezone.now(), callbacks=",".join(callback_ids)[:255]
    )


def batch_summary(batch: JobBatch) -> dict[str, Any]:
    """What a batch's callback is called with (JSON-friendly)."""
    return {
        "batch": batch.id,
        "name": batch.name,
        "total": batch.total,
        "succeeded": batch.succeeded,
        "dead": batch.dead,
        "cancelled": batch.cancelled,
        "expired": batch.expired,
        "state": "succeeded" if batch.succeeded == batch.total else "failed",
    }


@dataclass(frozen=True)
class CancelOutcome:
    cancelled: list[int] = field(default_factory=list)  # ended cancelled now
    requested: list[int] = field(default_factory=list)  # running: asked to stop


def cancel(
    *, row_ids: Collection[int], by: str, grace: int, alias: str = "default"
) -> CancelOutcome:
    """Cancel the tasks of ``row_ids`` that have not ended.

    A queued or retrying task ends ``cancelled`` at once (it never runs again). A
    running one (claimed, perhaps started) is asked to stop: ``cancel_requested_at``,
    and its node is told (NOTIFY); it ends ``cancelled`` when its attempt ends, or when
    its worker process is killed ``grace`` seconds later (``jobs.engine.supervisor``).
    Call inside a transaction: the rows are locked first, so a waiting row is either
    cancelled or claimed.
    """
    now = timezone.now()
    rows = list(
        Job.objects.using(alias)
        .select_for_update()
        .filter(id__in=row_ids, state__in=Job.ACTIVE_STATES)
        .only(*_END_FIELDS, "state", "owner", "cancel_requested_at")
        .order_by("id")
    )
    waiting = [r for r in rows if r.state != Job.State.RUNNING]
    running = [r for r in rows if r.state == Job.State.RUNNING]
    _end(alias, waiting, state=Job.State.CANCELLED, now=now, by=by)
    if running:
        Job.objects.using(alias).filter(id__in=[r.id for r in running]).update(
            cancel_requested_at=Coalesce(F("cancel_requested_at"), Value(now)),
            cancelled_by=by[:150],
            cancel_grace=grace,
        )
        db = connections[alias]
        if db.vendor == "postgresql":
            with db.cursor() as cursor:
                for owner in sorted({r.owner for r in running if r.owner is not None}):
                    cursor.execute("SELECT pg_notify(%s, '')", [cancel_channel(owner)])
    return CancelOutcome(cancelled=[r.id for r in waiting], requested=[r.id for r in running])


def cancel_requests(*, alias: str, node: int) -> dict[int, int | None]:
    """The running tasks of ``node`` an operator asked to stop: row id -> grace seconds."""
    return dict(
        Job.objects.using(alias)
        .filter(owner=node, state=Job.State.RUNNING, cancel_requested_at__isnull=False)
        .values_list("id", "cancel_grace")
    )


def cancel_requested(*, alias: str, row_id: int) -> bool:
    """Whether a cancel was asked for the task of ``row_id`` (a read)."""
    return (
        Job.objects.using(alias)
        .filter(id=row_id, cancel_requested_at__isnull=False)
        .exclude(state__in=Job.CLAIMABLE_STATES)
        .exists()
    )


def _end_claimed(alias: str, *, row_id: int, node: int, state: str, when: Q) -> bool:
    """End a task this node claimed and has not started (``when`` must hold)."""
    now = timezone.now()
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(when, id=row_id, owner=node, state=Job.State.RUNNING, started_at__isnull=True)
            .only(*_END_FIELDS)
        )
        _end(alias, rows, state=state, now=now)
    return bool(rows)


def cancel_unstarted(*, alias: str, row_id: int, node: int) -> bool:
    """A claimed task whose cancel was asked before it started: cancelled, never run."""
    return _end_claimed(
        alias, row_id=row_id, node=node, state=Job.State.CANCELLED,
        when=Q(cancel_requested_at__isnull=False),
    )  # fmt: skip


def expire_claimed(*, alias: str, row_id: int, node: int) -> bool:
    """A claimed task past its deadline: expired, never run. False when its row has no
    deadline any more (an operator retried it) or it is not this node's."""
    return _end_claimed(
        alias, row_id=row_id, node=node, state=Job.State.EXPIRED,
        when=Q(expires_at__isnull=False, expires_at__lte=timezone.now()),
    )  # fmt: skip


def expire_due(*, alias: str = "default", limit: int = 500) -> int:
    """Waiting tasks past their deadline that no worker claimed: expired. How many."""
    now = timezone.now()
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update(skip_locked=True)
            .filter(
                expires_at__isnull=False,
                expires_at__lte=now,
                state__in=Job.CLAIMABLE_STATES,
            )
            .only(*_END_FIELDS)
            .order_by("expires_at")[:limit]
        )
        _end(alias, rows, state=Job.State.EXPIRED, now=now)
    return len(rows)


def cancel_ended(
    *,
    alias: str,
    row_id: int,
    attempt: int,
    node: int,
    ended: str,
    started_at: datetime | None = None,
    worker: WorkerInfo | None = None,
) -> bool:
    """The started attempt of a task asked to stop has ended (``ended``: how): the task
    is cancelled, the attempt recorded. False when the row is not this node's attempt."""
    now = timezone.now()
    worker = worker or WorkerInfo()
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(id=row_id, attempt=attempt, owner=node, state=Job.State.RUNNING)
            .only(*_END_FIELDS, "func", "job_name", "cancelled_by")
        )
        if not rows:
            return False
        [job] = rows
        _end(alias, rows, state=Job.State.CANCELLED, now=now, by=job.cancelled_by, ended=ended)
        JobAttempt.objects.using(alias).create(
            task_id=job.task_id,
            attempt=attempt,
            func=job.func,
            job_name=job.job_name,
            succeeded=False,
            started_at=started_at,
            finished_at=now,
            error_type="Cancelled",
            error_message=f"cancelled by {job.cancelled_by or 'an operator'}: {ended}",
            cluster=worker.cluster[:100],
            host=worker.host[:255],
            pid=worker.pid,
        )
    return True


def snooze(
    *, alias: str, row_id: int, attempt: int, restore: int, node: int, seconds: float
) -> str:
    """The task asked to run again in ``seconds``: ready then, its attempt count back to
    ``restore`` (none used), ``snoozes`` + 1. A task asked to stop meanwhile ends
    cancelled instead. Returns the row's state now ("" when it is not this node's)."""
    now = timezone.now()
    with transaction.atomic(using=alias):
        job = (
            Job.objects.using(alias)
            .select_for_update()
            .filter(id=row_id, attempt=attempt, owner=node, state=Job.State.RUNNING)
            .only(*_END_FIELDS, "cancel_requested_at", "cancelled_by", "last_failed_at")
            .first()
        )
        if job is None:
            return ""
        if job.cancel_requested_at is not None:
            _end(alias, [job], state=Job.State.CANCELLED, now=now, by=job.cancelled_by,
                 ended="a snooze")  # fmt: skip
            return Job.State.CANCELLED
        state = Job.State.QUEUED if job.last_failed_at is None else Job.State.RETRYING
        Job.objects.using(alias).filter(id=row_id).update(
            state=state,
            run_at=now + timedelta(seconds=seconds),
            attempt=restore,
            snoozes=F("snoozes") + 1,
            owner=None,
            claimed_at=None,
            claimed_by="",
            started_at=None,
        )
        if seconds <= 0:
            notify(alias, [job.queue])
    return state


def insert_batch(
    members: list[tuple[dict[str, Any], str]],
    *,
    name: str,
    on_success: str,
    on_finish: str,
    on_failure: str,
    alias: str = "default",
) -> tuple[int, list[str]]:
    """A ``JobBatch`` and its members ((task package, queue) pairs), in one transaction:
    the batch id and the members' task ids. A member whose unique key is already active
    is not part of the batch (``total`` counts the rest)."""
    with transaction.atomic(using=alias):
        batch = JobBatch.objects.using(alias).create(
            name=name[:200], on_success=on_success, on_finish=on_finish, on_failure=on_failure
        )
        rows = []
        for task, queue in members:
            task["batch"] = batch.id
            rows.append(job_row_from_task(task, queue=queue, payload=SignedPackage.dumps(task)))
        Job.objects.using(alias).bulk_create(rows, ignore_conflicts=True)
        notify(alias, {queue for _task, queue in members})
        total = Job.objects.using(alias).filter(batch=batch.id).count()
        JobBatch.objects.using(alias).filter(id=batch.id).update(total=total)
        if total == 0:
            batch.total = 0
            _close_batch(alias, batch)
    return batch.id, [task["id"] for task, _queue in members]
