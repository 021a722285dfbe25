"""The queue broker: django-q2 reads and writes tasks through the ``jobs.Job`` table.

``DatabaseBroker`` is ``Q_CLUSTER["broker_class"]`` on PostgreSQL and SQLite
(unless ``QUEUE_REDIS_URL`` is set). django-q2 calls it from several processes:

* ``enqueue`` in whatever process calls ``async_task`` (a view, the scheduler in
  the sentinel, a job). It runs on that caller's connection and transaction: a
  rolled-back transaction leaves no task behind. On PostgreSQL the same
  statement sends ``pg_notify`` (delivered at commit, dropped on rollback).
* ``dequeue`` in the cluster's pusher. It claims up to ``bulk`` ready rows in one
  statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; inside an ``IMMEDIATE``
  transaction, i.e. SQLite's single write lock, on SQLite) and marks them
  running with a lock time. When nothing is ready it blocks on ``LISTEN`` (a
  dedicated autocommit psycopg connection) for up to ``Q_CLUSTER["poll"]``
  seconds, so an enqueue wakes it within milliseconds and the timeout is only
  the fallback (retries that become due, a lost notification).
* ``acknowledge`` in the monitor (the task succeeded): the row is deleted.
* ``fail`` in the pusher (the payload cannot be read): the row becomes dead.

Delivery is at least once: a running row whose lock (``run_at``) passed belongs
to a worker that died, and is claimed again with ``attempt + 1`` (the lost
attempt is written to ``JobAttempt`` as ``WorkerLost``). At ``max_attempts`` it
is not handed out again but made dead through ``record_failure``.
"""

# SQL text here is built only from model metadata (table and column names), never
# from input; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import atexit
import contextlib
import hashlib
import multiprocessing.util
import os
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.utils import timezone
from django_q.brokers import Broker
from django_q.conf import Conf, logger
from django_q.signing import SignedPackage

from jobs.failures.records import WorkerInfo, record_failure
from jobs.models import Job, JobAttempt
from jobs.queue import job_row_from_task

AckId = tuple[int, int]  # (Job.id, attempt)

_TABLE = Job._meta.db_table
_CLAIMABLE = ("queued", "retrying", "running")
_INSERT_FIELDS = [f for f in Job._meta.concrete_fields if not f.primary_key]
_INSERT_COLUMNS = ", ".join(f.column for f in _INSERT_FIELDS)
_INSERT_PLACEHOLDERS = ", ".join(["%s"] * len(_INSERT_FIELDS))

# Expired locks at max_attempts are looked for at most this often: keeps the
# sweep off the path between a NOTIFY and the claim.
_SWEEP_INTERVAL = 5.0
# The pusher re-checks its Django connection (CONN_MAX_AGE, health) this often.
_CONNECTION_CHECK_INTERVAL = 10.0
# An acknowledgement batch is deleted at once when it reaches this size.
_ACK_BATCH_MAX = 500
# SQLite has no LISTEN: an idle pusher polls this often (a cheap indexed read).
_SQLITE_POLL_SECONDS = 0.05


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def channel_name(queue: str) -> str:
    """The NOTIFY channel of a queue (an identifier: at most 63 bytes)."""
    name = f"jobs_{queue}"
    if len(name.encode()) > 63:
        name = "jobs_" + hashlib.sha1(queue.encode(), usedforsecurity=False).hexdigest()
    return name


def delete_acknowledged(alias: str, ids: list[int]) -> None:
    """Delete the rows of succeeded tasks in one statement."""
    db = connections[alias]
    with db.cursor() as cursor:
        if db.vendor == "postgresql" and db.get_autocommit():
            # Losing an acknowledgement in a database crash only means the task runs
            # again (delivery is at-least-once anyway): skip waiting for the WAL flush.
            # One simple-protocol round trip: no parameters, the ids are ints.
            id_list = ",".join(str(int(i)) for i in ids)
            cursor.execute(
                "BEGIN; SET LOCAL synchronous_commit TO OFF; "
                f"DELETE FROM {_TABLE} WHERE id IN ({id_list}); COMMIT"
            )
        else:
            placeholders = ", ".join(["%s"] * len(ids))
            cursor.execute(f"DELETE FROM {_TABLE} WHERE id IN ({placeholders})", ids)


class _AckBuffer:
    """Acknowledgements of one process, deleted in batches by a background thread.

    django-q2's monitor acknowledges task by task, each a round trip and a commit
    in its single loop; here ``acknowledge`` only appends the id and a thread
    deletes what piled up every ``delay`` seconds (or at ``_ACK_BATCH_MAX`` ids),
    in one statement. A monitor that exits flushes first (multiprocessing
    finalizer and atexit); one that is killed loses at most ``delay`` seconds of
    acknowledgements, and those tasks run again when their lock expires.
    """

    def __init__(self, alias: str, delay: float) -> None:
        self.alias = alias
        self.delay = delay
        self.ids: list[int] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="jobs-ack-flusher", daemon=True)
        self.thread.start()
        multiprocessing.util.Finalize(self, self.flush, exitpriority=100)
        atexit.register(self.flush)

    def add(self, row_id: int) -> None:
        with self.lock:
            self.ids.append(row_id)
            full = len(self.ids) >= _ACK_BATCH_MAX
        if full:
            self.wake.set()

    def pending(self) -> int:
        with self.lock:
            return len(self.ids)

    def flush(self) -> None:
        with self.lock:
            ids, self.ids = self.ids, []
        if not ids:
            return
        try:
            delete_acknowledged(self.alias, ids)
        except Exception:
            with self.lock:  # try again with the next batch
                self.ids[:0] = ids
            connections[self.alias].close()
            raise

    def stop(self) -> None:
        """Flush what is pending, end the thread and close its database connection."""
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
                    logger.exception("could not delete acknowledged tasks; retrying")
                    time.sleep(1.0)
        finally:
            connections[self.alias].close()  # this thread's own connection


_ack_buffers: dict[tuple[int, str, float], _AckBuffer] = {}
_ack_buffers_lock = threading.Lock()


def _ack_buffer(alias: str, delay: float) -> _AckBuffer:
    key = (os.getpid(), alias, delay)  # per process: a forked child starts its own thread
    with _ack_buffers_lock:
        buffer = _ack_buffers.get(key)
        if buffer is None:
            buffer = _ack_buffers[key] = _AckBuffer(alias, delay)
        return buffer


def flush_acknowledgements() -> None:
    """Delete the rows of every acknowledgement this process still holds."""
    for (pid, _alias, _delay), buffer in list(_ack_buffers.items()):
        if pid == os.getpid():
            buffer.flush()


def stop_ack_buffers() -> None:
    """Flush and stop this process's acknowledgement threads (a new ack starts one again)."""
    with _ack_buffers_lock:
        mine = [key for key in _ack_buffers if key[0] == os.getpid()]
        buffers = [_ack_buffers.pop(key) for key in mine]
    for buffer in buffers:
        buffer.stop()


class DatabaseBroker(Broker):
    """django-q2 broker on the ``jobs.Job`` table (PostgreSQL and SQLite)."""

    def __init__(self, list_key: str | None = None) -> None:
        # Built on every async_task(): nothing here may touch the database.
        super().__init__(list_key=list_key)
        self._listener: Any = None
        self._listener_pid: int | None = None
        self._last_sweep = 0.0
        self._last_connection_check = time.monotonic()

    def __getstate__(self) -> tuple[str, Any]:
        return self.list_key, self._info

    def __setstate__(self, state: tuple[str, Any]) -> None:
        super().__setstate__(state)
        self._listener = None
        self._listener_pid = None
        self._last_sweep = 0.0
        self._last_connection_check = time.monotonic()

    # -- plumbing -----------------------------------------------------------------
    @staticmethod
    def get_connection(list_key: str | None = None) -> str:
        """The database alias (django-q2 stores it as ``self.connection``)."""
        return Conf.ORM if isinstance(Conf.ORM, str) else DEFAULT_DB_ALIAS

    @property
    def db(self) -> BaseDatabaseWrapper:
        return connections[self.connection]

    @property
    def is_postgresql(self) -> bool:
        return self.db.vendor == "postgresql"

    @property
    def queue(self) -> str:
        return self.list_key or Conf.CLUSTER_NAME

    @property
    def channel(self) -> str:
        return channel_name(self.queue)

    def _lock_settings(self) -> tuple[int, int]:
        """The default task timeout and the margin of a claim lock.

        A claimed row is locked (``run_at``) until it must have finished: its own
        timeout (the guard kills it then) plus a margin, plus the time it may wait
        in the cluster's local queue behind the rows claimed before it in the same
        batch. With ``workers`` processes taking tasks in order, a task starts at
        the latest after (sum of the timeouts ahead of it) / workers, so that is
        added: a bigger ``bulk`` never makes a waiting task look abandoned.
        """
        default_timeout = int(Conf.TIMEOUT or 0) or int(Conf.RETRY or 60)
        margin = int(_setting("JOBS_LOCK_MARGIN_SECONDS", 60))
        return default_timeout, margin

    @staticmethod
    def _workers() -> int:
        return max(int(Conf.WORKERS or 1), 1)

    def _claimed_by(self) -> str:
        return f"{Conf.CLUSTER_NAME}@{socket.gethostname()}:{os.getpid()}"[:255]

    def _check_connection(self) -> None:
        """In long-lived processes, honour CONN_MAX_AGE and drop broken connections."""
        now = time.monotonic()
        if self.db.in_atomic_block:
            return
        if self.db.errors_occurred or now - self._last_connection_check > (
            _CONNECTION_CHECK_INTERVAL
        ):
            self._last_connection_check = now
            self.db.close_if_unusable_or_obsolete()

    # -- enqueue ------------------------------------------------------------------
    def enqueue(self, task: str) -> int | None:
        """Insert the task; returns the row id, or None for a duplicate unique task."""
        package = SignedPackage.loads(task)
        job = job_row_from_task(package, queue=self.queue, payload=task)
        db = self.db
        if self.is_postgresql:
            # Every Job column is a str, int, aware datetime or None, which psycopg
            # adapts as is; the fields' get_db_prep_save costs ~0.14 ms per enqueue.
            values = [getattr(job, f.attname) for f in _INSERT_FIELDS]
        else:
            values = [f.get_db_prep_save(getattr(job, f.attname), db) for f in _INSERT_FIELDS]
        insert = (
            f"INSERT INTO {_TABLE} ({_INSERT_COLUMNS}) VALUES ({_INSERT_PLACEHOLDERS}) "
            "ON CONFLICT DO NOTHING RETURNING id"
        )
        with db.cursor() as cursor:
            if self.is_postgresql:
                # One round trip: the notification is sent only if a row was
                # inserted, and only when the caller's transaction commits.
                cursor.execute(
                    f"WITH ins AS ({insert}) SELECT id, pg_notify(%s, '') FROM ins",
                    [*values, self.channel],
                )
            else:
                cursor.execute(insert, values)
            row = cursor.fetchone()
        return row[0] if row else None

    # -- dequeue ------------------------------------------------------------------
    def dequeue(self) -> list[tuple[AckId, str]] | None:
        """Claim up to ``bulk`` ready tasks; when none are ready, wait for a NOTIFY."""
        from jobs import pauses

        self._check_connection()
        if self.is_postgresql:
            self._ensure_listener()
        # A paused queue hands out nothing (jobs.pauses); resume's NOTIFY ends the wait.
        if pauses.held(self):
            if self.wait(pauses.CHECK_SECONDS):
                pauses.forget(self)  # woken by a NOTIFY: maybe the resume
            return None
        if time.monotonic() - self._last_sweep > _SWEEP_INTERVAL:
            self.sweep_dead()
        tasks = self.claim()
        if tasks:
            return tasks
        self.wait(Conf.POLL)
        if pauses.held(self):  # paused during the wait
            return None
        return self.claim()

    def claim(self, *, bulk: int | None = None) -> list[tuple[AckId, str]]:
        """Claim up to ``bulk`` ready rows now (no waiting)."""
        bulk = bulk or int(Conf.BULK or 1)
        now = timezone.now()
        if self.is_postgresql:
            rows = self._claim_postgresql(now=now, bulk=bulk)
        else:
            rows = self._claim_sqlite(now=now, bulk=bulk)
        # rows: (id, attempt, payload, previous state, priority, previous run_at, task_id,
        # func, job_name, claimed_by before this claim)
        rows.sort(key=lambda r: (-r[4], r[5], r[0]))
        lost = [r for r in rows if r[3] == Job.State.RUNNING]
        if lost:
            self._record_lost_attempts(lost, now=now)
        return [((r[0], r[1]), r[2]) for r in rows]

    def _claim_postgresql(self, *, now: datetime, bulk: int) -> list[tuple]:
        default_timeout, margin = self._lock_settings()
        sql = f"""
            WITH picked AS (
                SELECT id, state, run_at, claimed_by, priority, timeout FROM {_TABLE}
                WHERE queue = %(queue)s
                  AND state IN ('queued', 'retrying', 'running')
                  AND run_at <= %(now)s
                  AND NOT (state = 'running' AND max_attempts > 0
                           AND attempt >= max_attempts)
                ORDER BY priority DESC, run_at, id
                LIMIT %(bulk)s
                FOR UPDATE SKIP LOCKED
            ), ahead AS (
                -- Work queued before each row in this batch (see _lock_seconds).
                SELECT id, COALESCE(SUM(COALESCE(timeout, %(timeout)s)) OVER (
                    ORDER BY priority DESC, run_at, id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS work
                FROM picked
            )
            UPDATE {_TABLE} AS j
            SET state = 'running', attempt = j.attempt + 1, claimed_at = %(now)s,
                claimed_by = %(by)s,
                run_at = %(now)s + make_interval(secs =>
                    COALESCE(j.timeout, %(timeout)s) + %(margin)s + ahead.work / %(workers)s)
            FROM picked JOIN ahead ON ahead.id = picked.id
            WHERE j.id = picked.id
            RETURNING j.id, j.attempt, j.payload, picked.state, j.priority, picked.run_at,
                      j.task_id, j.func, j.job_name, picked.claimed_by
        """
        params = {
            "queue": self.queue,
            "now": now,
            "bulk": bulk,
            "by": self._claimed_by(),
            "timeout": default_timeout,
            "margin": margin,
            "workers": float(self._workers()),
        }
        with self.db.cursor() as cursor:
            cursor.execute(sql, params)
            return [list(r) for r in cursor.fetchall()]

    def _claim_sqlite(self, *, now: datetime, bulk: int) -> list[tuple]:
        # settings use transaction_mode IMMEDIATE: BEGIN takes SQLite's write lock,
        # so the read and the update below are one serialized step across processes.
        default_timeout, margin = self._lock_settings()
        db = self.db
        by = self._claimed_by()
        with transaction.atomic(using=self.connection), db.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT id, attempt, payload, state, priority, run_at, task_id, func,
                       job_name, claimed_by, timeout
                FROM {_TABLE}
                WHERE queue = %s AND state IN ('queued', 'retrying', 'running')
                  AND run_at <= %s
                  AND NOT (state = 'running' AND max_attempts > 0
                           AND attempt >= max_attempts)
                ORDER BY priority DESC, run_at, id
                LIMIT %s
                """,
                [self.queue, db.ops.adapt_datetimefield_value(now), bulk],
            )
            rows = [list(r) for r in cursor.fetchall()]
            if not rows:
                return []
            updates = []
            work_ahead = 0.0
            for r in rows:
                timeout = r[10] or default_timeout
                lock = now + timedelta(seconds=timeout + margin + work_ahead / self._workers())
                work_ahead += timeout
                r[1] += 1
                updates.append(
                    [
                        r[1],
                        db.ops.adapt_datetimefield_value(now),
                        by,
                        db.ops.adapt_datetimefield_value(lock),
                        r[0],
                    ]
                )
            cursor.executemany(
                f"UPDATE {_TABLE} SET state = 'running', attempt = %s, claimed_at = %s, "
                "claimed_by = %s, run_at = %s WHERE id = %s",
                updates,
            )
        return [r[:10] for r in rows]

    def _record_lost_attempts(self, rows: list[list], *, now: datetime) -> None:
        """History for redelivered rows: the previous attempt's worker never reported."""
        JobAttempt.objects.using(self.connection).bulk_create(
            [
                JobAttempt(
                    task_id=r[6],
                    attempt=r[1] - 1,
                    func=r[7],
                    job_name=r[8],
                    succeeded=False,
                    finished_at=now,
                    error_type="WorkerLost",
                    error_message=(
                        f"the worker ({r[9] or 'unknown'}) running attempt {r[1] - 1} stopped "
                        "without reporting before its lock expired; the task was handed out again"
                    ),
                )
                for r in rows
            ]
        )
        logger.warning("redelivered %d task(s) whose worker was lost", len(rows))

    def sweep_dead(self, *, limit: int = 100) -> int:
        """Make dead the running rows whose lock expired at ``max_attempts``."""
        self._last_sweep = time.monotonic()
        now = timezone.now()
        with transaction.atomic(using=self.connection):
            # Row locks (PostgreSQL) or the write lock (SQLite, IMMEDIATE) keep two
            # pushers from writing the same lost attempt twice.
            rows = list(
                Job.objects.using(self.connection)
                .select_for_update(skip_locked=True)
                .filter(
                    queue=self.queue,
                    state=Job.State.RUNNING,
                    run_at__lte=now,
                    max_attempts__gt=0,
                    attempt__gte=F("max_attempts"),
                )
                .order_by("id")
                .only("id", "task_id", "attempt", "claimed_by", "claimed_at")[:limit]
            )
            for job in rows:
                record_failure(
                    task_id=job.task_id,
                    attempt=job.attempt,
                    error_type="WorkerLost",
                    error_message=(
                        f"the worker ({job.claimed_by or 'unknown'}) running attempt "
                        f"{job.attempt} stopped without reporting before its lock expired; "
                        f"attempt {job.attempt} was the last allowed"
                    ),
                    started_at=job.claimed_at,
                    finished_at=now,
                    retry_at=None,
                    worker=WorkerInfo(cluster=Conf.CLUSTER_NAME),
                )
        if rows:
            logger.warning("%d task(s) dead: worker lost at their last attempt", len(rows))
        return len(rows)

    # -- waiting ------------------------------------------------------------------
    def _ensure_listener(self) -> Any:
        """A dedicated autocommit connection LISTENing on this queue's channel.

        Opened lazily in the process that dequeues (the pusher is forked from the
        sentinel: a connection inherited across fork must not be shared).
        """
        if (
            self._listener is not None
            and self._listener_pid == os.getpid()
            and not self._listener.closed
        ):
            return self._listener
        import psycopg
        from psycopg import sql

        params = dict(self.db.get_connection_params())
        for key in ("cursor_factory", "context", "prepare_threshold", "pool"):
            params.pop(key, None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self._listener = conn
        self._listener_pid = os.getpid()
        return conn

    def wait(self, timeout: float) -> bool:
        """Block until a task may be ready (a NOTIFY), at most ``timeout`` seconds."""
        timeout = max(float(timeout or 0), 0.0)
        if not self.is_postgresql:
            time.sleep(min(timeout, _SQLITE_POLL_SECONDS))
            return False
        try:
            conn = self._ensure_listener()
            woke = False
            for _notify in conn.notifies(timeout=timeout, stop_after=1):
                woke = True
            if woke:
                # Drain what arrived together so the next idle wait really waits.
                for _notify in conn.notifies(timeout=0.0):
                    pass
            return woke
        except Exception:
            # A broken listener only costs latency: poll until it is reopened.
            logger.exception("LISTEN connection failed; reopening")
            self.close_listener()
            time.sleep(min(timeout, 1.0))
            return False

    def close_listener(self) -> None:
        if self._listener is not None and self._listener_pid == os.getpid():
            with contextlib.suppress(Exception):  # closing a broken connection
                self._listener.close()
        self._listener = None
        self._listener_pid = None

    # -- results ------------------------------------------------------------------
    def acknowledge(self, task_id: AckId) -> None:
        """The task succeeded: its row is deleted (batched, see ``JOBS_ACK_BATCH_SECONDS``)."""
        row_id = task_id[0] if isinstance(task_id, (tuple, list)) else task_id
        delay = float(_setting("JOBS_ACK_BATCH_SECONDS", 0))
        if delay > 0 and self.db.get_autocommit():
            _ack_buffer(self.connection, delay).add(int(row_id))
            return
        self._check_connection()
        delete_acknowledged(self.connection, [int(row_id)])

    def delete(self, task_id: AckId | int) -> None:
        row_id = task_id[0] if isinstance(task_id, (tuple, list)) else task_id
        Job.objects.using(self.connection).filter(id=row_id).delete()

    def fail(self, task_id: AckId) -> None:
        """The payload cannot be read (bad signature, unpicklable): dead, never dropped."""
        row_id, attempt = task_id if isinstance(task_id, (tuple, list)) else (task_id, None)
        job = Job.objects.using(self.connection).filter(id=row_id).only("task_id", "attempt")
        job = job.first()
        if job is None:
            return
        record_failure(
            task_id=job.task_id,
            attempt=attempt if attempt is not None else job.attempt,
            error_type="UnreadablePayload",
            error_message=(
                "the queued payload could not be decoded (bad signature or unpicklable "
                "data): was SECRET_KEY or the cluster name changed since it was enqueued, "
                "or was the row edited? The task was not run."
            ),
            retry_at=None,
            worker=WorkerInfo(cluster=Conf.CLUSTER_NAME),
        )

    # -- inspection -----------------------------------------------------------------
    def queue_size(self) -> int:
        """Tasks waiting to run: queued, retrying, and running rows whose lock expired."""
        now = timezone.now()
        qs = Job.objects.using(self.connection).filter(queue=self.queue)
        waiting = qs.filter(state__in=[Job.State.QUEUED, Job.State.RETRYING]).count()
        expired = qs.filter(state=Job.State.RUNNING, run_at__lte=now).count()
        return waiting + expired

    def lock_size(self) -> int:
        """Tasks claimed by a worker and not acknowledged yet (lock still valid)."""
        return (
            Job.objects.using(self.connection)
            .filter(queue=self.queue, state=Job.State.RUNNING, run_at__gt=timezone.now())
            .count()
        )

    def purge_queue(self) -> int:
        """Delete the tasks waiting in this queue (not running ones, not dead ones)."""
        deleted, _ = (
            Job.objects.using(self.connection)
            .filter(queue=self.queue, state__in=[Job.State.QUEUED, Job.State.RETRYING])
            .delete()
        )
        return deleted

    def delete_queue(self) -> int:
        return self.purge_queue()

    def ping(self) -> bool:
        with self.db.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)

    def info(self) -> str:
        if not self._info:
            how = "LISTEN/NOTIFY" if self.is_postgresql else "polling"
            self._info = f"DatabaseBroker {self.db.vendor} ({how}) [{self.connection}]"
        return self._info
