"""A worker process of ``qcluster``: it claims tasks, runs them and finishes them itself.

The loop, one small step at a time (each a method, tested alone):

* ``claim`` takes a few ready tasks of the queue for this process (``transitions.claim``);
  the batch grows while tasks are quick and falls back to one as soon as one is slow;
  on PostgreSQL the tasks claimed behind one that runs long go back at once
  (``_hand_back_waiting``), so a long task never sits on work an idle peer could take;
* ``run_next`` starts the next claimed task (``transitions.start``: the attempt counts
  from here; a task no longer ours is skipped), runs it (``execute.run``) and
  records its outcome: a success joins the batch to finish, a failure is written
  at once (``failing.record``);
* ``finish`` writes the batch: rows deleted, results kept, chain links enqueued in
  one transaction, then ``hook=`` and ``post_execute`` after the commit. A finish that
  fails on a database error is tried again until it lands; the process takes no new
  task meanwhile;
* ``wait`` sleeps until a NOTIFY of the queue (PostgreSQL) or a short poll (SQLite).

``stop()`` (SIGTERM from the supervisor) ends the loop after the task in hand: what
was claimed and not started goes back, the batch is finished, the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.utils import timezone
from django_q.conf import Conf
from django_q.signals import post_execute, post_spawn
from django_q.signing import SignedPackage

from jobs.engine import context, failing, limits, paused, results, stats, transitions
from jobs.engine.channels import LIMITED, RESUMED, notify
from jobs.engine.execute import Outcome
from jobs.engine.execute import run as execute
from jobs.engine.funcs import func_path
from jobs.engine.listener import Listener
from jobs.engine.marks import UNMARKED, Marks
from jobs.engine.specs import spec_for

logger = structlog.stdlib.get_logger("jobs.engine.worker")
_stdlib_logger = logging.getLogger("jobs.engine.worker")

# A task quicker than this lets the next claim take more (up to Q_CLUSTER["bulk"]).
QUICK_SECONDS = 0.05
# SQLite has no LISTEN: an idle worker polls this often (a cheap indexed read).
SQLITE_POLL_SECONDS = 0.05
# A succeeded task waits at most this long to be finished with others.
FINISH_DELAY_SECONDS = 0.02
# Blocked while the supervisor forks a worker, until the worker's handlers are set.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# Errors after which a write is tried again (the database went away for a while).
TRANSIENT = (OperationalError, InterfaceError)


class Worker:
    """One worker process's loop (see the module docstring)."""

    def __init__(
        self,
        *,
        queue: str,
        node: int,
        alias: str = "default",
        bulk: int | None = None,
        poll: float | None = None,
        slot: Callable[[int, int, float], None] | None = None,
        cancels: Callable[[int], bool] | None = None,
    ) -> None:
        self.queue = queue
        self.node = node
        self.connection = alias  # paused.held reads the queue and the alias
        self.bulk = max(int(bulk or Conf.BULK or 1), 1)
        self.poll = float(poll if poll is not None else (Conf.POLL or 1.0))
        self.host = context.hostname()
        self.by = f"{Conf.CLUSTER_NAME or queue}@{self.host}:{os.getpid()}"[:255]
        # Tells the supervisor what runs now: (row id, attempt, deadline); zeros when idle.
        self.slot = slot or (lambda row_id, attempt, deadline: None)
        # Whether an operator asked to stop the task of a row id (its supervisor's memory).
        self.cancels = cancels or (lambda row_id: False)
        self.stopping = False
        self.batch = 1
        self.claimed: deque[transitions.Claimed] = deque()
        self.done: list[tuple[context.AckId, dict[str, Any]]] = []
        self.done_since = 0.0
        self.ran = 0
        self.listener: Listener | None = None
        # On PostgreSQL a thread marks the tasks that run a while (jobs.engine.marks).
        self.marks = (
            Marks(alias, node, on_marked=self._hand_back_waiting)
            if connections[alias].vendor == "postgresql"
            else None
        )
        self.log_successes = bool(settings.JOBS_LOG_SUCCESSES)
        self.gate = limits.Gate(queue_limit=settings.JOBS_QUEUE_CONCURRENCY.get(queue))
        # Queues where this worker freed a slot of a full limit, to wake after its own
        # next claim: it takes such a slot itself first, with no NOTIFY and no herd.
        self.freed: set[str] = set()

    @property
    def db(self) -> Any:
        return connections[self.connection]

    # -- the loop -----------------------------------------------------------------------
    def serve(self) -> None:
        """Run until ``stop()``, recycling after ``Q_CLUSTER["recycle"]`` tasks."""
        post_spawn.send(sender="django_q", proc_name=f"Worker-{os.getpid()}")
        recycle = int(Conf.RECYCLE or 0)
        outage = 0.0
        try:
            while not self.stopping:
                if recycle and self.ran >= recycle:
                    logger.info("worker recycled", tasks=self.ran)
                    break
                try:
                    self.step()
                    outage = 0.0
                except TRANSIENT as exc:
                    # The database went away between two steps: wait, reconnect, go on.
                    outage = min(max(outage * 2, 0.1), 5.0)
                    logger.warning(
                        "database unavailable; retrying", error=str(exc), retry_in=outage
                    )
                    with contextlib.suppress(Exception):
                        self.db.close()
                    time.sleep(outage)
        finally:
            self.close()

    def step(self) -> None:
        """One unit of work: run a claimed task, or finish, claim, or wait."""
        if self.claimed:
            self.run_next()
            if self.done and time.monotonic() - self.done_since >= FINISH_DELAY_SECONDS:
                self.finish()
            return
        self.finish()
        if self.claim():
            return
        stats.flush_pending()  # no run waits for the next busy second to be counted
        self.wait()

    def stop(self, *_: Any) -> None:
        """Stop after the task in hand (the SIGTERM handler)."""
        self.stopping = True

    def close(self) -> None:
        """Give back what was not started, finish what was done, write the run counts,
        drop the connections."""
        self.give_back()
        self.finish()
        self.wake()
        stats.flush()  # logs what it could not write
        if self.marks is not None:
            self.marks.close()
        if self.listener is not None:
            self.listener.close()
        connections.close_all()

    # -- the steps ---------------------------------------------------------------------
    def claim(self) -> int:
        """Claim a batch of ready tasks; how many."""
        if self.stopping:
            return 0
        # Django's own check would ask the server (SELECT 1) before every claim; a
        # connection that fails is closed when its error is caught (TRANSIENT).
        db = self.db
        if db.connection is not None and (db.errors_occurred or not db.get_autocommit()):
            db.close_if_unusable_or_obsolete()
        if paused.held(self):
            self.wake()
            return 0
        try:
            claimed = self._claim()
        except TRANSIENT:
            logger.exception("claim failed; trying again", queue=self.queue)
            self.db.close()
            time.sleep(min(self.poll, 1.0))
            return 0
        self.claimed.extend(claimed)
        return len(claimed)

    def _claim(self) -> list[transitions.Claimed]:
        """The limited path when the gate says so (``jobs.engine.limits``), else the plain
        claim, which never takes a task with a limit."""
        gate = self.gate
        # The last look found no task with a limit ready: a probe of the index first.
        probe = gate.due() and gate.probe and gate.queue_limit is None
        if probe and not transitions.limited_ready(alias=self.connection, queue=self.queue):
            gate.after(took=0, found=0, retry_in=None)  # none yet: look again later
        if gate.due():
            result = transitions.claim_limited(
                alias=self.connection,
                queue=self.queue,
                node=self.node,
                by=self.by,
                limit=self.batch,
                queue_limit=self.gate.queue_limit,
            )
            self.gate.after(took=result.took, found=result.found, retry_in=result.retry_in)
            if not result.took:
                self.wake()
            return result.claimed
        self.wake()
        return transitions.claim(
            alias=self.connection,
            queue=self.queue,
            node=self.node,
            by=self.by,
            limit=self.batch,
        )

    def wait(self) -> bool:
        """Sleep until a task of the queue may be ready; True when woken by a NOTIFY."""
        if self.stopping:
            return False
        if self.db.vendor != "postgresql":
            time.sleep(min(self.poll, SQLITE_POLL_SECONDS))
            return False
        if self.listener is None:
            self.listener = Listener(self.connection, self.queue)
        payloads = self.listener.wait(self.gate.wait_bound(self.poll))
        if payloads and RESUMED in payloads:
            paused.forget(self)
        if payloads and LIMITED in payloads:
            self.gate.wake()
        return payloads is not None

    def run_next(self) -> Outcome | None:
        """Start and run the next claimed task; None when it was not ours any more."""
        claimed = self.claimed.popleft()
        try:
            task = SignedPackage.loads(claimed.payload)
        except Exception:
            started = self._start(claimed)
            if started is not None:
                failing.unreadable(claimed, attempt=started, node=self.node, alias=self.connection)
            return None
        if self._ends_unstarted(claimed, task):
            return None
        func = func_path(task.get("func"))
        # Imports the job's module if need be: a job is known only once it is imported.
        spec = spec_for(func)
        # A transactional job checks its attempt inside its own transaction, and a rated
        # task's start moves its place in the rate window to now: their start is written
        # first. Any other task is marked started only if it runs a while.
        transactional = spec is not None and spec.transactional
        marks = self.marks if not (transactional or claimed.rated) else None
        if marks is not None:
            marks.started(claimed.row_id)
            attempt: int | None = claimed.attempt + 1
        else:
            attempt = self._start(claimed)
        if attempt is None:
            return None
        task["attempt"] = attempt
        task["ack_id"] = (claimed.row_id, attempt)
        timeout = _timeout(task, claimed)
        run = context.Run(
            task_id=str(task.get("id") or ""),
            attempt=attempt,
            cluster=Conf.CLUSTER_NAME or self.queue,
            host=self.host,
            pid=os.getpid(),
            row_id=claimed.row_id,
            alias=self.connection,
            task=task,
        )
        task["worker"] = {"cluster": run.cluster, "host": run.host, "pid": run.pid}
        job_name = spec.name if spec is not None else func
        task["job_name"] = spec.name if spec is not None else ""
        context.enter(run)
        structlog.contextvars.bind_contextvars(
            task_id=run.task_id, job=job_name, attempt=attempt, cluster=run.cluster, pid=run.pid
        )
        if _stdlib_logger.isEnabledFor(logging.DEBUG):
            logger.debug("task started", task_name=task.get("name"))
        self.slot(claimed.row_id, attempt, time.time() + timeout if timeout else 0.0)
        cancelled = False
        try:
            outcome = execute(task, timeout=timeout)
            # Asked to stop: however the attempt ended, the task ends cancelled (a
            # transactional job that committed has finished: its success stands).
            cancelled = self.cancels(claimed.row_id) and not task.get(results.COMPLETED_IN_WORKER)
        finally:
            self.slot(0, 0, 0.0)
        self.ran += 1
        if outcome.duration > QUICK_SECONDS:
            self.batch = 1
        elif not self.claimed:
            self.batch = min(self.batch * 2, self.bulk)
        try:
            self._log_finished(outcome)
            # The row's attempt as the finish will find it: not counted yet when unmarked.
            # A snooze uses no attempt, and a cancelled run is one that counts.
            counts = (outcome.success or outcome.snooze is not None) and not cancelled
            row_attempt = self._settle(marks, claimed, attempt, success=counts)
            if row_attempt is None:
                pass  # not this node's task any more: the new owner's attempt counts
            elif cancelled:
                self._cancelled(claimed, task, outcome, row_attempt)
                _announce([task])
            elif outcome.snooze is not None:
                self._snoozed(claimed, outcome.snooze, row_attempt)
            elif outcome.success and task.get(results.COMPLETED_IN_WORKER):
                # A transactional job: finished in its own transaction already.
                results.announce(task)
                _announce([task])
            elif outcome.success:
                if not self.done:
                    self.done_since = time.monotonic()
                self.done.append(((claimed.row_id, row_attempt), task))
            else:
                self._until_written(
                    lambda: failing.record(
                        task,
                        outcome,
                        row_id=claimed.row_id,
                        max_attempts=claimed.max_attempts,
                        owner=self.node,
                    )
                )
                if self.gate.queue_limit is not None:
                    self.freed.add(self.queue)
                _announce([task])
        finally:
            context.enter(None)
            structlog.contextvars.clear_contextvars()
        return outcome

    def finish(self) -> int:
        """Finish the succeeded tasks in one transaction; how many were this node's."""
        if not self.done:
            return 0
        done, self.done = self.done, []
        tasks = dict(done)
        acks = [ack for ack, _task in done]
        finished: set[context.AckId] = set()

        def write() -> None:
            nonlocal finished
            try:
                finished = transitions.finish(
                    self.connection, acks, tasks, owner=self.node, by=self.by, freed=self.freed
                )
            except TRANSIENT:
                raise
            except Exception:
                # One result a column refuses must not hold back the others.
                finished = self._finish_one_by_one(acks, tasks)

        self._until_written(write)
        if finished and self.gate.queue_limit is not None:
            self.freed.add(self.queue)  # the queue's own limit: a slot is free
        if self.claimed or self.stopping:
            self.wake()  # not claiming now: the freed slots are for the others
        _announce([tasks[ack] for ack in acks if ack in finished])
        return len(finished)

    def wake(self) -> None:
        """Wake the workers of the queues whose limited slots this worker freed."""
        if self.freed:
            freed, self.freed = self.freed, set()
            with contextlib.suppress(*TRANSIENT):  # a lost wake-up costs one poll at most
                notify(self.connection, freed, payload=LIMITED)

    def give_back(self) -> int:
        """Return the claimed tasks not started (a stopping worker)."""
        if not self.claimed:
            return 0
        row_ids = [c.row_id for c in self.claimed]
        self.claimed.clear()
        count = 0

        def write() -> None:
            nonlocal count
            count = transitions.give_back(alias=self.connection, node=self.node, row_ids=row_ids)

        self._until_written(write)
        if count:
            logger.info("handed back claimed tasks that had not started", count=count)
        return count

    def _hand_back_waiting(self, conn: Any) -> None:
        """The task in hand runs long (the marks thread calls this once it is marked):
        the tasks claimed behind it go back, for an idle peer to take now. The loop
        waits in ``Marks.settle`` meanwhile, so the two threads never change
        ``claimed`` at once."""
        waiting = list(self.claimed)
        if not waiting:
            return
        given = transitions.give_back_waiting(
            conn, node=self.node, by=self.by, row_ids=[c.row_id for c in waiting]
        )
        for claimed in waiting:
            if claimed.row_id in given:
                self.claimed.remove(claimed)
        if given:
            logger.debug("handed back the tasks claimed behind a long one", count=len(given))

    # -- flow control ------------------------------------------------------------------
    def _ends_unstarted(self, claimed: transitions.Claimed, task: dict[str, Any]) -> bool:
        """A claimed task past its deadline, or cancelled before it started, ends now
        without running (True); the row is the judge (an operator may have retried it)."""
        ended = False
        expires = task.get("expires")
        if self.cancels(claimed.row_id):

            def write() -> None:
                nonlocal ended
                ended = transitions.cancel_unstarted(
                    alias=self.connection, row_id=claimed.row_id, node=self.node
                )

            self._until_written(write)
            if ended:
                logger.info("task cancelled before it started", row_id=claimed.row_id)
        elif isinstance(expires, datetime) and expires <= timezone.now():

            def write() -> None:
                nonlocal ended
                ended = transitions.expire_claimed(
                    alias=self.connection, row_id=claimed.row_id, node=self.node
                )

            self._until_written(write)
            if ended:
                logger.info(
                    "task expired before it started",
                    task_id=task.get("id"),
                    expires=expires.isoformat(),
                )
        return ended

    def _cancelled(
        self, claimed: transitions.Claimed, task: dict[str, Any], outcome: Outcome, attempt: int
    ) -> None:
        how = "a success" if outcome.success else (outcome.error_type or "a failure")
        worker = task.get("worker") or {}

        def write() -> None:
            transitions.cancel_ended(
                alias=self.connection,
                row_id=claimed.row_id,
                attempt=attempt,
                node=self.node,
                ended=how,
                started_at=outcome.started_at,
                worker=transitions.WorkerInfo(
                    cluster=str(worker.get("cluster") or ""),
                    host=str(worker.get("host") or ""),
                    pid=worker.get("pid") if isinstance(worker.get("pid"), int) else None,
                ),
            )

        self._until_written(write)
        logger.info("task cancelled", task_id=task.get("id"), ended=how)

    def _snoozed(self, claimed: transitions.Claimed, seconds: float, attempt: int) -> None:
        state = ""

        def write() -> None:
            nonlocal state
            state = transitions.snooze(
                alias=self.connection,
                row_id=claimed.row_id,
                attempt=attempt,
                restore=claimed.attempt,
                node=self.node,
                seconds=seconds,
            )

        self._until_written(write)
        logger.info("task snoozed", seconds=seconds, state=state or None)

    # -- helpers -------------------------------------------------------------------------
    def _log_finished(self, outcome: Outcome) -> None:
        # A log line costs about as much as a quick task: successes only when asked.
        if outcome.success and not self.log_successes:
            if not _stdlib_logger.isEnabledFor(logging.DEBUG):
                return
            log = logger.debug
        else:
            log = logger.info if outcome.success else logger.warning
        log(
            "task finished",
            duration_ms=round(outcome.duration * 1000, 1),
            success=outcome.success,
        )

    def _settle(
        self, marks: Marks | None, claimed: transitions.Claimed, attempt: int, *, success: bool
    ) -> int | None:
        """The row's attempt for the outcome's write; None when the task is not ours.

        A task that ended before its mark was written: a success is finished at the
        attempt its row still has (``finish`` deletes it only where this process holds
        it); a failure is started now, so that the attempt counts.
        """
        if marks is None:
            return attempt  # started before it ran
        counted = marks.settle(claimed.row_id)
        if counted == UNMARKED:
            if success:
                return claimed.attempt
            counted = self._start(claimed)
        if counted != attempt:
            logger.warning(
                "outcome dropped: the task is no longer this node's", row_id=claimed.row_id
            )
            return None
        return attempt

    def _start(self, claimed: transitions.Claimed) -> int | None:
        attempt: int | None = None

        def write() -> None:
            nonlocal attempt
            attempt = transitions.start(
                alias=self.connection, row_id=claimed.row_id, node=self.node, rated=claimed.rated
            )

        self._until_written(write)
        return attempt

    def _finish_one_by_one(
        self, acks: list[context.AckId], tasks: dict[context.AckId, dict[str, Any]]
    ) -> set[context.AckId]:
        def finish(ack: context.AckId, task: dict[str, Any]) -> set[context.AckId]:
            return transitions.finish(
                self.connection, [ack], {ack: task}, owner=self.node, by=self.by
            )

        finished: set[context.AckId] = set()
        for ack in acks:
            task = tasks[ack]
            try:
                finished |= finish(ack, task)
                continue
            except TRANSIENT:
                raise
            except Exception as exc:
                # Keep what can be kept: the row is finished, the result says why it is not.
                logger.exception("task result could not be saved", task_id=task.get("id"))
                task["result"] = f"the result could not be saved: {type(exc).__name__}"
                task.pop("chain", None)
            try:
                finished |= finish(ack, task)
            except TRANSIENT:
                raise
            except Exception:
                task["save"] = False  # even the explanation is refused: no result row
                finished |= finish(ack, task)
        return finished

    def _until_written(self, write: Callable[[], object]) -> None:
        """Run a write until it lands: an outcome is never dropped for a database blip."""
        delay = 0.1
        while True:
            try:
                write()
                return
            except TRANSIENT:
                logger.exception("database unavailable; trying again", retry_in=delay)
                with contextlib.suppress(Exception):
                    self.db.close()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _timeout(task: dict[str, Any], claimed: transitions.Claimed) -> float | None:
    value = task.get("timeout") or claimed.timeout or Conf.TIMEOUT
    try:
        seconds = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def _announce(tasks: list[dict[str, Any]]) -> None:
    """Count the runs, and send django-q2's ``post_execute`` (after the outcome is saved)."""
    for task in tasks:
        stats.on_post_execute(task=task)
        try:
            post_execute.send(sender="django_q", task=task)
        except Exception:
            logger.exception("post_execute receiver failed", task_id=task.get("id"))


def run_inline(task: dict[str, Any]) -> str:
    """Run a task package now, in this process, as django-q2's sync mode does: its result
    is saved and its hook called; a failure raises to the caller and is not recorded."""
    context.enter(
        context.Run(
            task_id=str(task.get("id") or ""),
            attempt=1,
            cluster=Conf.CLUSTER_NAME or "",
            host=context.hostname(),
            pid=os.getpid(),
            task=task,
        )
    )
    func = func_path(task.get("func"))
    spec = spec_for(func)
    try:
        # The caller's own log context (a request's id) is back once the task is done.
        with structlog.contextvars.bound_contextvars(
            task_id=task.get("id"), job=spec.name if spec is not None else func, attempt=1
        ):
            outcome = execute(task, timeout=None)
    finally:
        context.enter(None)
    if outcome.error is not None:
        raise outcome.error
    results.save_inline(task)
    _announce([task])
    return str(task["id"])


def main(
    *,
    queue: str,
    node: int,
    slot: Callable[[int, int, float], None],
    cancels: Callable[[int], bool] | None = None,
) -> None:
    """The worker process's entry point (forked by ``jobs.engine.supervisor``)."""
    connections.close_all()  # never share the parent's connections
    context.set_cancel_probe(cancels)
    worker = Worker(queue=queue, node=node, slot=slot, alias=_alias(), cancels=cancels)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    # Forked with these blocked (see Supervisor.spawn): one sent meanwhile arrives now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    worker.serve()


def _alias() -> str:
    alias = Conf.ORM
    return alias if isinstance(alias, str) else "default"
