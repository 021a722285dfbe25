"""The queue broker: django-q2 reads and writes tasks through the ``jobs.Job`` table.

``DatabaseBroker`` is ``Q_CLUSTER["broker_class"]`` on PostgreSQL and SQLite
(unless ``QUEUE_REDIS_URL`` is set). django-q2 calls it from several processes:

* ``enqueue`` in whatever process calls ``async_task`` (a view, the scheduler in
  the sentinel, a job). It runs on that caller's connection and transaction: a
  rolled-back transaction leaves no task behind. On PostgreSQL the same
  statement sends ``pg_notify`` (delivered at commit, dropped on rollback).
* ``dequeue`` in the cluster's pusher. It claims ready rows in one statement
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; inside an ``IMMEDIATE`` transaction,
  i.e. SQLite's single write lock, on SQLite), marks them running and stamps
  them with the claiming node (``jobs.engine.nodes``). It claims no more than the
  cluster's local queue has room for, so a node never hoards work. When nothing
  is ready it blocks on ``LISTEN`` (a dedicated autocommit psycopg connection)
  for up to ``Q_CLUSTER["poll"]`` seconds, so an enqueue wakes it within
  milliseconds. When the cluster stops, the tasks waiting in its local queue are
  handed back (ready again, no attempt used) instead of run.
* ``acknowledge`` in the monitor (the task succeeded): the row is deleted, if
  this node still owns that attempt, in the same transaction as the task's
  result (``jobs.engine.results``, in batches).
* ``fail`` in the pusher (the payload cannot be read): the row becomes dead.

A running row belongs to its node for as long as the node lives, however long
the task runs or waits for the monitor; the task's own timeout is enforced by
django-q2's guard. Rows of a dead node are handed out again by ``jobs.engine.nodes``.
"""

# SQL text here is built only from model metadata (table and column names), never
# from input; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.util
import os
import queue as queue_module
import socket
import time
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django_q.brokers import Broker
from django_q.conf import Conf, logger
from django_q.signing import SignedPackage

from jobs.engine import context, nodes, paused, results
from jobs.engine.attempts import WorkerInfo, record_failure
from jobs.engine.backend import DatabaseBackend, QueueBackend
from jobs.engine.channels import channel_name
from jobs.engine.context import AckId
from jobs.engine.rows import insert_row, job_row_from_task
from jobs.models import Job, WorkerNode

_TABLE = Job._meta.db_table
_NODE_TABLE = WorkerNode._meta.db_table

# The pusher re-checks its Django connection (CONN_MAX_AGE, health) this often.
_CONNECTION_CHECK_INTERVAL = 10.0
# SQLite has no LISTEN: an idle pusher polls this often (a cheap indexed read).
_SQLITE_POLL_SECONDS = 0.05
# A pusher whose local queue is full looks again after this long.
_FULL_QUEUE_WAIT = 0.005


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _local_queue() -> tuple[Any, Any] | None:
    """The pusher's local task queue and stop event, when this process is the pusher.

    django-q2 starts its pusher as ``Process(target=pusher, args=(task_queue,
    event, broker))`` and hands the broker neither; the process object keeps its
    arguments. Knowing the queue lets ``dequeue`` claim only what fits and hand
    back what never started when the cluster stops.
    """
    process = multiprocessing.current_process()
    target = getattr(process, "_target", None)
    args: tuple[Any, ...] = getattr(process, "_args", ())
    if getattr(target, "__module__", "") == "django_q.pusher" and len(args) >= 2:
        return args[0], args[1]
    return None


class DatabaseBroker(Broker):  # type: ignore[misc]  # django-q2 ships no types
    """django-q2 broker on the ``jobs.Job`` table (PostgreSQL and SQLite)."""

    # Set by Broker.__init__: the queue name (None: the cluster's), the alias, the info line.
    list_key: str | None
    connection: str
    _info: str | None

    # Errors after which a batch of acknowledgements is kept and tried again.
    transient_errors: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

    # What jobs.engine.backend.current() serves for this broker.
    backend_class: type[QueueBackend] = DatabaseBackend

    def __init__(self, list_key: str | None = None) -> None:
        # Built on every async_task(): nothing here may touch the database.
        super().__init__(list_key=list_key)
        self._reset_process_state()

    def __getstate__(self) -> tuple[str | None, str | None]:
        return self.list_key, self._info

    def __setstate__(self, state: tuple[str | None, str | None]) -> None:
        super().__setstate__(state)
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._listener: Any = None
        self._listener_pid: int | None = None
        self._last_connection_check = time.monotonic()
        self._local: tuple[Any, Any] | None = None
        self._local_pid: int | None = None
        self._unbatched: dict[AckId, dict[str, Any]] = {}

    # -- plumbing -----------------------------------------------------------------
    @staticmethod
    def get_connection(list_key: str | None = None) -> str:
        """The database alias (django-q2 stores it as ``self.connection``)."""
        alias = Conf.ORM
        return alias if isinstance(alias, str) else DEFAULT_DB_ALIAS

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

    def _claimed_by(self) -> str:
        return f"{Conf.CLUSTER_NAME}@{socket.gethostname()}:{os.getpid()}"[:255]

    def _node(self) -> int:
        cluster = Conf.CLUSTER_NAME or self.queue
        return nodes.claiming_node_id(cluster=cluster, alias=self.connection)

    def _pusher_queue(self) -> tuple[Any, Any] | None:
        if self._local_pid != os.getpid():
            self._local, self._local_pid = _local_queue(), os.getpid()
            if self._local is not None:
                # The pusher may see the stop event only after its last dequeue:
                # hand back what is left when its process exits, too.
                multiprocessing.util.Finalize(self, self.hand_back_local_queue, exitpriority=50)
        return self._local

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
    def enqueue(self, task: str) -> int | str | None:
        """Insert the task; returns the row id, or None for a duplicate unique task.

        An id, whatever its type: the Redis broker returns the task id."""
        try:
            package = SignedPackage.loads(task)
        except Exception:
            # Stored as given, like django-q2's brokers: the pusher cannot read it
            # either, and ``fail`` makes it a dead task with a clear error.
            package = {"id": uuid.uuid4().hex, "func": "", "name": "unreadable payload"}
        # A registered job's declared cluster wins over the default broker's queue.
        queue = package.get("cluster") or self.queue
        return insert_row(
            job_row_from_task(package, queue=queue, payload=task), alias=self.connection
        )

    # -- dequeue ------------------------------------------------------------------
    def dequeue(self) -> list[tuple[AckId, str]] | None:
        """Claim ready tasks that fit in the local queue; when none are ready, wait for a NOTIFY."""
        self._check_connection()
        if self._stopping():
            self.hand_back_local_queue()
            return None
        if self.is_postgresql:
            self._ensure_listener()
        # A paused queue hands out nothing (jobs.pauses); resume's NOTIFY ends the wait.
        if paused.held(self):
            if self.wait(paused.CHECK_SECONDS):
                paused.forget(self)  # woken by a NOTIFY: maybe the resume
            return None
        room = self._room()
        if room <= 0:
            time.sleep(_FULL_QUEUE_WAIT)
            return None
        tasks = self.claim(bulk=room)
        if tasks:
            return tasks
        self.wait(Conf.POLL)
        if self._stopping():
            self.hand_back_local_queue()
            return None
        if paused.held(self):  # paused during the wait
            return None
        return self.claim(bulk=room) or None

    def _room(self) -> int:
        """How many tasks to claim now: ``bulk``, less what the local queue cannot take."""
        bulk = int(Conf.BULK or 1)
        local = self._pusher_queue()
        limit = int(Conf.QUEUE_LIMIT or 0)
        if local is None or limit <= 0:
            return bulk
        try:
            waiting: int = local[0].qsize()
        except NotImplementedError:  # macOS: no sem_getvalue
            return bulk
        return min(bulk, limit - waiting)

    def _stopping(self) -> bool:
        local = self._pusher_queue()
        return local is not None and local[1].is_set()

    def hand_back_local_queue(self) -> int:
        """The cluster is stopping: return the tasks no worker has taken yet."""
        local = self._pusher_queue()
        if local is None:
            return 0
        acks: list[AckId] = []
        while True:
            try:
                task = local[0].get(timeout=0.05)
            except queue_module.Empty:
                break
            if isinstance(task, dict) and isinstance(task.get("ack_id"), (tuple, list)):
                acks.append(tuple(task["ack_id"]))
        count = nodes.hand_back(self._node(), acks, alias=self.connection) if acks else 0
        if count:
            logger.info("handed back %d claimed task(s) that had not started", count)
        return count

    def claim(self, *, bulk: int | None = None) -> list[tuple[AckId, str]]:
        """Claim up to ``bulk`` ready rows now (no waiting) for this process's node."""
        bulk = bulk or int(Conf.BULK or 1)
        now = timezone.now()
        node = self._node()
        if self.is_postgresql:
            rows = self._claim_postgresql(now=now, bulk=bulk, node=node)
        else:
            rows = self._claim_sqlite(now=now, bulk=bulk, node=node)
        # rows: (id, attempt, payload, priority, run_at)
        rows.sort(key=lambda r: (-r[3], r[4], r[0]))
        return [((r[0], r[1]), r[2]) for r in rows]

    def _claim_postgresql(self, *, now: datetime, bulk: int, node: int) -> list[list[Any]]:
        # The share lock on the node's row orders this claim against a peer
        # declaring the node dead (jobs.engine.nodes.declare_dead): a dead node claims nothing.
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
                LIMIT %(bulk)s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {_TABLE} AS j
            SET state = 'running', attempt = j.attempt + 1, claimed_at = %(now)s,
                claimed_by = %(by)s, owner = %(node)s
            FROM picked
            WHERE j.id = picked.id
            RETURNING j.id, j.attempt, j.payload, j.priority, j.run_at
        """
        params: dict[str, str | int | datetime] = {
            "queue": self.queue,
            "now": now,
            "bulk": bulk,
            "by": self._claimed_by(),
            "node": node,
        }
        with self.db.cursor() as cursor:
            cursor.execute(sql, params)
            return [list(r) for r in cursor.fetchall()]

    def _claim_sqlite(self, *, now: datetime, bulk: int, node: int) -> list[list[Any]]:
        # settings use transaction_mode IMMEDIATE: BEGIN takes SQLite's write lock,
        # so the checks and the update below are one serialized step across processes.
        db = self.db
        by = self._claimed_by()
        with transaction.atomic(using=self.connection), db.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {_NODE_TABLE} WHERE id = %s AND dead_at IS NULL "
                "AND stopped_at IS NULL",
                [node],
            )
            if cursor.fetchone() is None:
                return []
            cursor.execute(
                f"""
                SELECT id, attempt, payload, priority, run_at FROM {_TABLE}
                WHERE queue = %s AND state IN ('queued', 'retrying') AND run_at <= %s
                ORDER BY priority DESC, run_at, id
                LIMIT %s
                """,
                [self.queue, db.ops.adapt_datetimefield_value(now), bulk],
            )
            rows = [list(r) for r in cursor.fetchall()]
            if not rows:
                return []
            for r in rows:
                r[1] += 1
            cursor.executemany(
                f"UPDATE {_TABLE} SET state = 'running', attempt = %s, claimed_at = %s, "
                "claimed_by = %s, owner = %s WHERE id = %s",
                [[r[1], db.ops.adapt_datetimefield_value(now), by, node, r[0]] for r in rows],
            )
        return rows

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
        """The task succeeded: its row is deleted and its result written (``results``)."""
        if not isinstance(task_id, (tuple, list)) or len(task_id) != 2:
            return  # not an ack id this broker handed out
        ack = (int(task_id[0]), int(task_id[1]))
        if self._batches():
            results.finisher(self.connection, self, context.current_node_id).add_ack(ack)
            return
        self._check_connection()
        task = self._unbatched.pop(ack, None)
        self.finish_batch(
            [ack], {ack: task} if task is not None else {}, owner=context.current_node_id()
        )

    def finish_batch(
        self, acks: list[AckId], tasks: dict[AckId, dict[str, Any]], *, owner: int | None
    ) -> None:
        """Finish acknowledged tasks this node owns: rows deleted, results written."""
        results.finish(self.connection, acks, tasks, owner=owner, broker=self)

    def keep_result(self, ack: AckId, task: dict[str, Any]) -> None:
        """Hold a succeeded task's result until its acknowledgement finishes it."""
        if self._batches():
            results.finisher(self.connection, self, context.current_node_id).add_result(ack, task)
        else:
            self._unbatched[ack] = task

    def _batches(self) -> bool:
        return float(_setting("JOBS_ACK_BATCH_SECONDS", 0)) > 0 and self.db.get_autocommit()

    def delete(self, task_id: AckId | int) -> None:
        row_id = task_id[0] if isinstance(task_id, (tuple, list)) else task_id
        Job.objects.using(self.connection).filter(id=row_id).delete()

    def fail(self, task_id: AckId) -> None:
        """The payload cannot be read (bad signature, unpicklable): dead, never dropped."""
        row_id, attempt = task_id if isinstance(task_id, (tuple, list)) else (task_id, None)
        job = (
            Job.objects.using(self.connection).filter(id=row_id).only("task_id", "attempt").first()
        )
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
            owner=self._node(),
        )

    # -- inspection -----------------------------------------------------------------
    def queue_size(self) -> int:
        """Tasks waiting to run: queued and retrying rows of this queue."""
        return (
            Job.objects.using(self.connection)
            .filter(queue=self.queue, state__in=Job.CLAIMABLE_STATES)
            .count()
        )

    def lock_size(self) -> int:
        """Tasks claimed by a worker node and not finished yet."""
        return (
            Job.objects.using(self.connection)
            .filter(queue=self.queue, state=Job.State.RUNNING)
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
            alive: bool = cursor.fetchone() == (1,)
            return alive

    def info(self) -> str:
        if not self._info:
            how = "LISTEN/NOTIFY" if self.is_postgresql else "polling"
            self._info = f"DatabaseBroker {self.db.vendor} ({how}) [{self.connection}]"
        return self._info
