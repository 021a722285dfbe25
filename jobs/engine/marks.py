"""Start marks, written by a thread of the worker for the tasks that run a while (PostgreSQL).

An attempt counts once its task starts: ``attempt`` + 1 and ``started_at`` on its row.
Writing that before every task would put a database round trip in front of each one,
and handing each start to a thread costs a wake-up of that thread per task. Instead
the worker tells ``Marks`` which task runs now (``started``: an attribute set; the
thread is woken only after a second with no task), and the thread marks that task only once it
has run for ``MARK_AFTER_SECONDS``. When the task ends, ``settle`` says how its start
counts:

* not marked yet (a quick task): the thread will not mark it any more. A success is
  finished without a mark (its row is deleted where this worker process still holds it
  unstarted); a failure is started and failed by the worker itself;
* marked: the attempt the mark counted, or None when the task was no longer this
  node's (declared dead, handed out again): its outcome is dropped, the new owner's
  attempt is the one that counts.

Once a task is marked, the worker's ``on_marked`` runs on the thread's connection while
the worker waits in ``settle``: the worker hands back the tasks it claimed behind the
long one, so that an idle peer takes them now rather than after it.

A node killed while a task is younger than ``MARK_AFTER_SECONDS`` leaves it unmarked:
it is handed out again as never started. When only the worker process died, the
supervisor knows which task it was running and counts the attempt
(``transitions.worker_lost``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg
import structlog
from django.db import connections

from jobs.engine import transitions

logger = structlog.stdlib.get_logger("jobs.engine.marks")

# A task still running after this long is marked started by the thread.
MARK_AFTER_SECONDS = 0.05
# While tasks keep starting, the thread looks every MARK_AFTER_SECONDS on its own rather
# than being woken by each start (a wake-up per task costs more CPU than the task); once
# no task has started for this long, it sleeps until a start wakes it.
IDLE_SECONDS = 1.0
# What ``settle`` returns for a task that ended before its mark was written.
UNMARKED: Final = "unmarked"


class Marks:
    def __init__(
        self, alias: str, node: int, *, on_marked: Callable[[Any], None] | None = None
    ) -> None:
        self.alias = alias
        self.node = node
        self.on_marked = on_marked
        self.cond = threading.Condition()
        self.current: tuple[int, float] | None = None  # (row id, when it started)
        self.last_start = 0.0
        self.writing: int | None = None  # the row whose mark is being written
        self.done: dict[int, int | None] = {}  # row id -> its attempt, None: not ours
        self.asleep = False  # waiting with no deadline: a start must wake it
        self.closing = False
        self.conn: Any = None
        self.thread: threading.Thread | None = None

    def started(self, row_id: int) -> None:
        """The task of ``row_id`` starts now (returns at once)."""
        with self.cond:
            self.current = (row_id, time.monotonic())
            self.last_start = self.current[1]
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="jobs-marks", daemon=True)
                self.thread.start()
            elif self.asleep:
                self.cond.notify_all()

    def settle(self, row_id: int) -> int | str | None:
        """The task of ``row_id`` ended: ``UNMARKED``, or the attempt its mark counted
        (None: the task was not this node's any more)."""
        with self.cond:
            if self.current is not None and self.current[0] == row_id:
                self.current = None
            while self.writing == row_id:
                self.cond.wait(1.0)
            if row_id in self.done:
                return self.done.pop(row_id)
            return UNMARKED

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()

    def _run(self) -> None:
        while True:
            with self.cond:
                row_id = self._next_to_mark()
                if row_id is None:
                    return
                self.writing = row_id
            attempt = self._write(row_id)
            if attempt is not None and self.on_marked is not None:
                self._after_mark(self.on_marked)
            with self.cond:
                self.done[row_id] = attempt
                self.writing = None
                self.cond.notify_all()

    def _next_to_mark(self) -> int | None:
        """Wait (holding the condition) until the running task is due a mark."""
        while not self.closing:
            current = self.current
            if current is None or current[0] in self.done:
                if time.monotonic() - self.last_start < IDLE_SECONDS:
                    self.cond.wait(MARK_AFTER_SECONDS)  # the next start is near
                    continue
                self.asleep = True
                self.cond.wait()
                self.asleep = False
                continue
            due = current[1] + MARK_AFTER_SECONDS - time.monotonic()
            if due <= 0:
                return current[0]
            self.cond.wait(due)
        return None

    def _after_mark(self, on_marked: Callable[[Any], None]) -> None:
        try:
            on_marked(self.conn)
        except Exception:  # best effort: what was not handed back runs after the task
            logger.exception("tasks claimed behind a long one not handed back")
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None

    def _write(self, row_id: int) -> int | None:
        """Mark the task started, trying again until the database takes it."""
        delay = 0.1
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    params = dict(connections[self.alias].get_connection_params())
                    for key in ("cursor_factory", "context", "prepare_threshold", "pool"):
                        params.pop(key, None)
                    self.conn = psycopg.connect(**params, autocommit=True)
                return transitions.mark_started(self.conn, row_id=row_id, node=self.node)
            except Exception:  # the thread must live: a worker waits on its marks
                logger.exception("start mark not written; trying again", retry_in=delay)
                with contextlib.suppress(Exception):
                    self.conn.close()
                self.conn = None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
