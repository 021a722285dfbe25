"""A worker's side of the ``jobs.Job`` table: claim, start, and give back.

A task's life on its row: ``queued`` (or ``retrying``) -> claimed by one worker
process (``running``, ``owner`` = its node, ``claimed_by`` = the process,
``started_at`` empty) -> started (``attempt`` + 1, ``started_at`` set) -> finished
(``jobs.engine.results.finish`` deletes it), failed (``jobs.engine.attempts``), or
given back. An attempt counts only once it starts: a claimed task that never
started goes back with nothing recorded, whoever gives it back (a stopping worker,
a dead worker process, a dead node: ``jobs.engine.handout``).
"""

# SQL text here is built only from model metadata (table and column names), never
# from input; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from jobs.engine import bound, handout
from jobs.models import Job, WorkerNode

_TABLE = Job._meta.db_table
_NODE_TABLE = WorkerNode._meta.db_table
# A claim or a start lost in a database crash only means the task runs again
# (delivery is at least once), so these single statements commit without waiting
# for the WAL flush; the task's own writes keep the server's setting.
_NO_FLUSH = "AND set_config('synchronous_commit', 'off', true) IS NOT NULL "


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
    db = connections[alias]
    if db.vendor == "postgresql":
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
    stamp = now if db.vendor == "postgresql" else db.ops.adapt_datetimefield_value(now)
    if db.vendor == "postgresql":
        with bound.cursor(alias) as cursor:
            cursor.execute(_START + _NO_FLUSH + "RETURNING attempt", [stamp, row_id, node])
            row = cursor.fetchone()
    else:
        with db.cursor() as cursor:
            cursor.execute(_START + "RETURNING attempt", [stamp, row_id, node])
            row = cursor.fetchone()
    return int(row[0]) if row else None


def give_back(*, alias: str, node: int, row_ids: Sequence[int]) -> int:
    """Claimed tasks this worker will not start: ready again, nothing recorded."""
    if not row_ids:
        return 0
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(id__in=row_ids, owner=node, state=Job.State.RUNNING, started_at__isnull=True)
            .only(*handout.RESCUE_FIELDS)
        )
        handout.hand_out_again(rows, reason="", alias=alias)
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
        .only(*handout.RESCUE_FIELDS)
    )
    give_back(alias=alias, node=node, row_ids=[r.id for r in rows if r.started_at is None])
    return [r for r in rows if r.started_at is not None]
