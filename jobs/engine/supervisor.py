"""``manage.py qcluster``: a worker node, i.e. one supervisor process and N worker processes.

The supervisor claims and runs nothing itself. It registers the node and beats for
it (``nodes.Heartbeat``, a thread that also declares silent peers dead), forks the
workers (``jobs.engine.worker``), and on every tick:

* reaps a worker that died: what it held goes back (``transitions.worker_lost``: its
  started task with an attempt saying why it died, the rest as it was) and a new
  worker takes its place;
* kills a worker whose task ran past its timeout without stopping (the worker's own
  alarm comes first) and records the timeout as that attempt's failure;
* runs django-q2's scheduler (``Schedule`` rows), at start and then every few seconds.

SIGTERM or SIGINT stops it: every worker finishes the task in hand, gives back what it
had not started, and exits; then the node is marked stopped. A second SIGINT (Ctrl-C
twice) kills the workers at once (their tasks are handed out again). Each worker leads its own
process group, and a thread in it kills that group when the supervisor is gone, so no
process a task started outlives its node.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.scheduler import scheduler
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from jobs.engine import failing, nodes, transitions
from jobs.engine.channels import cancel_channel
from jobs.engine.execute import Outcome, TaskTimeout
from jobs.engine.listener import Listener
from jobs.engine.worker import STOP_SIGNALS
from jobs.engine.worker import main as worker_main
from jobs.models import Job

logger = structlog.stdlib.get_logger("jobs.engine.supervisor")

TICK_SECONDS = 0.2
SCHEDULE_SECONDS = 10.0
STATUS_SECONDS = 1.0
# A worker that dies sooner than this after its start died "at once" (see Seat).
QUICK_DEATH_SECONDS = 2.0
# A task past its timeout gets this long to stop on its own alarm before it is killed.
TIMEOUT_GRACE_SECONDS = 5.0
# Per worker: Job row id, attempt, deadline (epoch seconds; 0 = idle).
_SLOT = 3
# The node's running tasks an operator asked to stop, shared with its workers: the
# count, then the row ids (a task reads it through ``cancel_requested()``).
CANCEL_SLOTS = 256
# Without a NOTIFY, the supervisor reads the cancel requests this often (PostgreSQL:
# a fallback for a lost notification; SQLite has none: every tick).
CANCEL_POLL_SECONDS = 5.0


@dataclass
class Seat:
    """One worker's place: its process now, and its slot in the shared array."""

    index: int
    process: Any = None
    killed_for_timeout: tuple[int, int, float] | None = None
    killed_for_cancel: tuple[int, int] | None = None
    started: float = field(default_factory=time.monotonic)
    # A worker that keeps dying at once is started again after a growing pause.
    respawn_at: float = 0.0
    quick_deaths: int = 0

    @property
    def by(self) -> str:
        return f"{Conf.CLUSTER_NAME}@{nodes.hostname()}:{self.process.pid}"[:255]


def death_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "its worker process disappeared"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"its worker process was killed by {name}"
    return f"its worker process exited with code {exitcode} while running it"


class Supervisor:
    def __init__(self, *, workers: int | None = None) -> None:
        self.queue = Conf.CLUSTER_NAME or ""
        self.count = max(int(workers or Conf.WORKERS or 1), 1)
        self.ctx = multiprocessing.get_context("fork")
        self.slots: Any = self.ctx.RawArray("d", self.count * _SLOT)
        self.seats = [Seat(index=i) for i in range(self.count)]
        self.cancel_rows: Any = self.ctx.RawArray("d", CANCEL_SLOTS + 1)
        # row id -> (grace seconds, when this supervisor learned of it, monotonic)
        self.cancels: dict[int, tuple[float, float]] = {}
        self.cancel_listener: Listener | None = None
        self.next_cancel_poll = 0.0
        self.stopping = False
        self.forced = False
        self.node = 0
        self.heartbeat: nodes.Heartbeat | None = None
        self.next_schedule = 0.0
        # The supervisor holds the only write end: its death closes the pipe (see _watch).
        self.lifeline_r, self.lifeline_w = os.pipe()
        # What qinfo, qmonitor and qmemory read from the shared cache (django-q2's Stat).
        self.cluster_id = uuid.uuid4()
        self.born = timezone.now()
        self.reincarnations = 0
        self.next_status = 0.0

    # -- life ---------------------------------------------------------------------------
    def start(self) -> None:
        self.node = nodes.register(cluster=self.queue, workers=self.count)
        # A restarted node takes back at once what its killed predecessor held.
        nodes.rescue_dead_nodes()
        connections.close_all()  # the workers are forked next
        for seat in self.seats:
            self.spawn(seat)
        self.heartbeat = nodes.Heartbeat(self.node).start()
        logger.info(
            "Q Cluster %s running.",
            self.queue,
            node=self.node,
            workers=self.count,
            pid=os.getpid(),
        )

    def serve(self, *, run_once: bool = False) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.start()
        if run_once:
            self.request_stop()
        try:
            while self.tick():
                pass
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
            if self.cancel_listener is not None:
                self.cancel_listener.close()
            self.mark_stopped()
            connections.close_all()
            logger.info("Q Cluster %s has stopped.", self.queue, node=self.node)

    def mark_stopped(self) -> None:
        """The node's clean end, tried for a while if the database is away: otherwise
        its peers find it silent and hand out what it still held."""
        for delay in (0.1, 0.5, 1.0, 2.0, 4.0, 0.0):
            close_old_connections()
            try:
                nodes.stop(self.node)
                return
            except Exception:
                logger.exception("could not mark the node stopped", retry_in=delay or None)
                time.sleep(delay)

    def request_stop(self, signum: int = signal.SIGTERM, *_: Any) -> None:
        if self.stopping and signum == signal.SIGINT:
            self.forced = True
            logger.warning("second interrupt: killing the workers now")
            for seat in self.live():
                _kill_group(seat.process.pid)
            return
        if self.stopping:
            return  # a repeated SIGTERM changes nothing: the grace is the service manager's
        self.stopping = True
        logger.info("stopping: workers finish the task in hand", node=self.node)
        for seat in self.live():
            _signal(seat.process.pid, signal.SIGTERM)

    # -- one tick -----------------------------------------------------------------------
    def tick(self) -> bool:
        """Reap, restart, time out, schedule; False once every worker has stopped."""
        close_old_connections()  # a connection the database dropped is opened again
        waits: list[Any] = [seat.process.sentinel for seat in self.live()]
        listener = self._cancel_listener()
        if listener is not None:
            with contextlib.suppress(Exception):  # a broken link only costs the NOTIFY
                waits.append(listener.fileno())
        if waits:
            multiprocessing.connection.wait(waits, timeout=TICK_SECONDS)
        else:
            time.sleep(TICK_SECONDS)
        for seat in self.seats:
            if seat.process is not None and not seat.process.is_alive():
                self.reap(seat)
        for seat in self.seats:
            if seat.process is None and not self.stopping and time.monotonic() >= seat.respawn_at:
                self.spawn(seat)
                self.reincarnations += 1
        self.watch_cancels()
        if self.stopping:
            return bool(self.live())
        self.enforce_timeouts()
        self.schedule()
        self.publish_status()
        return True

    def live(self) -> list[Seat]:
        return [s for s in self.seats if s.process is not None and s.process.is_alive()]

    def spawn(self, seat: Seat) -> None:
        self._clear(seat)
        seat.killed_for_timeout = None
        seat.killed_for_cancel = None
        seat.process = self.ctx.Process(
            target=_worker_entry,
            kwargs={
                "queue": self.queue,
                "node": self.node,
                "slots": self.slots,
                "index": seat.index,
                "cancel_rows": self.cancel_rows,
                "lifeline": (self.lifeline_r, self.lifeline_w),
            },
            name=f"Worker-{seat.index + 1}",
        )
        # A stop signal must not reach a new worker before its own handler is in place
        # (it would run this process's handler there): blocked across the fork, the
        # worker unblocks them itself (worker.main).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            seat.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        seat.started = time.monotonic()
        if self.stopping:
            # The stop came while this worker was being made, too early for
            # request_stop to see it alive: it stops like the others.
            _signal(seat.process.pid, signal.SIGTERM)
        logger.info("worker process started", worker=seat.process.name, pid=seat.process.pid)

    def reap(self, seat: Seat) -> None:
        """A worker ended: clean up its process group and give back what it held."""
        process = seat.process
        process.join(0)
        if time.monotonic() - seat.started < QUICK_DEATH_SECONDS:
            seat.quick_deaths += 1
        else:
            seat.quick_deaths = 0
        seat.respawn_at = time.monotonic() + min(0.1 * 2**seat.quick_deaths, 10.0) * bool(
            seat.quick_deaths
        )
        _kill_group(process.pid)  # whatever its tasks started dies with it
        exitcode = process.exitcode
        stopped = seat.killed_for_cancel
        if exitcode == 0 and seat.killed_for_timeout is None and stopped is None:
            seat.process = None
            return  # stopped or recycled: it gave back and finished everything itself
        by = seat.by
        reason = death_reason(exitcode)
        timed_out = seat.killed_for_timeout
        running = int(self._slot(seat)[0]) or None
        try:
            if stopped is not None:
                self._record_forced_cancel(*stopped)
            elif timed_out is not None:
                self._record_timeout(*timed_out)
            lost = transitions.worker_lost(alias="default", node=self.node, by=by, running=running)
            for job in lost:
                failing.lost(job, reason=reason, owner=self.node)
        except Exception:
            # The database may be away: the node's own stop, or a peer, hands them out.
            logger.exception("could not hand out a dead worker's tasks", worker=by)
            lost = []
        if stopped is not None:
            logger.warning(
                "cancelled task stopped by force: its worker process was killed",
                worker=by,
                row_id=stopped[0],
                tasks_given_back=[job.task_id for job in lost],
            )
        elif exitcode != 0:
            logger.error(
                "worker process died",
                worker=by,
                exitcode=exitcode,
                reason=reason,
                tasks_lost=[job.task_id for job in lost],
            )
        seat.process = None

    def enforce_timeouts(self) -> None:
        now = time.time()
        for seat in self.live():
            row_id, attempt, deadline = self._slot(seat)
            if deadline and now > deadline + TIMEOUT_GRACE_SECONDS and not seat.killed_for_timeout:
                seat.killed_for_timeout = (int(row_id), int(attempt), deadline)
                logger.error(
                    "task ignored its timeout: killing its worker process",
                    worker=seat.by,
                    row_id=int(row_id),
                    attempt=int(attempt),
                )
                _kill_group(seat.process.pid)

    # -- cancels ------------------------------------------------------------------------
    def _cancel_listener(self) -> Listener | None:
        """PostgreSQL: the node's cancel channel, LISTENed to (opened on first use)."""
        if (
            self.cancel_listener is None
            and self.node
            and connections["default"].vendor == "postgresql"
        ):
            self.cancel_listener = Listener("default", "", channel=cancel_channel(self.node))
        return self.cancel_listener

    def watch_cancels(self) -> None:
        """Learn the cancels asked for this node's tasks (NOTIFY, or a poll), share them
        with the workers, and kill a worker whose task outlived its cancel's grace."""
        now = time.monotonic()
        told = self.cancel_listener.drain() if self.cancel_listener is not None else False
        if told or now >= self.next_cancel_poll:
            pg = self.cancel_listener is not None
            self.next_cancel_poll = now + (CANCEL_POLL_SECONDS if pg else 0.0)
            try:
                requests = transitions.cancel_requests(alias="default", node=self.node)
            except Exception:
                logger.exception("could not read the cancel requests")
                return
            default = float(settings.JOBS_CANCEL_GRACE_SECONDS)
            cancels = {
                row: self.cancels.get(row, (float(default if grace is None else grace), now))
                for row, grace in requests.items()
            }
            if set(cancels) != set(self.cancels):
                self._share_cancels(sorted(cancels))
            self.cancels = cancels
        if self.cancels:
            self.enforce_cancels(now)

    def _share_cancels(self, rows: list[int]) -> None:
        rows = rows[:CANCEL_SLOTS]
        self.cancel_rows[0] = 0.0  # readers see no entries while they change
        for i, row in enumerate(rows, start=1):
            self.cancel_rows[i] = float(row)
        for i in range(len(rows) + 1, CANCEL_SLOTS + 1):
            self.cancel_rows[i] = 0.0
        self.cancel_rows[0] = float(len(rows))

    def enforce_cancels(self, now: float) -> None:
        for seat in self.live():
            row_id, attempt, _deadline = self._slot(seat)
            cancel = self.cancels.get(int(row_id))
            if cancel is None or seat.killed_for_cancel or seat.killed_for_timeout:
                continue
            grace, seen = cancel
            if now >= seen + grace:
                seat.killed_for_cancel = (int(row_id), int(attempt))
                logger.warning(
                    "cancelled task did not stop within its grace: killing its worker process",
                    worker=seat.by,
                    row_id=int(row_id),
                    grace=grace,
                )
                _kill_group(seat.process.pid)

    def _record_forced_cancel(self, row_id: int, attempt: int) -> None:
        transitions.start(alias="default", row_id=row_id, node=self.node)  # if unmarked
        transitions.cancel_ended(
            alias="default",
            row_id=row_id,
            attempt=attempt,
            node=self.node,
            ended="stopped by force after its grace (its worker process was killed)",
            worker=transitions.WorkerInfo(cluster=self.queue, host=nodes.hostname()),
        )

    def schedule(self) -> None:
        if not Conf.SCHEDULER or time.monotonic() < self.next_schedule:
            return
        self.next_schedule = time.monotonic() + SCHEDULE_SECONDS
        try:
            scheduler(broker=get_broker())
        except Exception:
            logger.exception("schedule pass failed")
        finally:
            connections.close_all()

    def publish_status(self) -> None:
        """The node as django-q2's ``Stat`` in the shared cache, for its terminal views."""
        if time.monotonic() < self.next_status:
            return
        self.next_status = time.monotonic() + STATUS_SECONDS
        stat = Stat.__new__(Stat)
        Status.__init__(stat, pid=os.getpid(), cluster_id=self.cluster_id)
        stat.broker = get_broker()
        stat.tob = self.born
        stat.reincarnations = self.reincarnations
        stat.sentinel = os.getpid()
        stat.workers = [seat.process.pid for seat in self.live()]
        busy = any(self._slot(seat)[0] for seat in self.live())
        stat.status = Conf.STOPPING if self.stopping else (Conf.WORKING if busy else Conf.IDLE)
        try:
            stat.broker.set_stat(stat.key, SignedPackage.dumps(stat, True), STATUS_SECONDS * 3)
        except Exception:
            logger.exception("cluster status not published")

    # -- helpers -------------------------------------------------------------------------
    def _slot(self, seat: Seat) -> tuple[float, float, float]:
        i = seat.index * _SLOT
        return self.slots[i], self.slots[i + 1], self.slots[i + 2]

    def _clear(self, seat: Seat) -> None:
        i = seat.index * _SLOT
        self.slots[i + 2] = 0.0
        self.slots[i] = self.slots[i + 1] = 0.0

    def _record_timeout(self, row_id: int, attempt: int, deadline: float) -> None:
        job = (
            Job.objects.filter(id=row_id, attempt=attempt, owner=self.node)
            .only("task_id", "payload", "max_attempts", "timeout")
            .first()
        )
        if job is None:
            return
        try:
            task = SignedPackage.loads(job.payload)
        except Exception:
            task = {"id": job.task_id}
        task.update(attempt=attempt, worker={"cluster": self.queue, "host": nodes.hostname()})
        error = TaskTimeout(
            f"the task ran past its timeout of {job.timeout or Conf.TIMEOUT} s and did not stop; "
            "its worker process was killed"
        )
        now = timezone.now()
        outcome = Outcome(
            success=False,
            started_at=now,
            stopped=now,
            duration=0.0,
            error=error,
            error_type=f"{TaskTimeout.__module__}.{TaskTimeout.__qualname__}",
            message=str(error),
        )
        failing.record(task, outcome, row_id=row_id, max_attempts=job.max_attempts, owner=self.node)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _watch(lifeline: int) -> None:
    """In a worker: block until the supervisor is gone, then kill this process group."""
    while True:
        try:
            if not os.read(lifeline, 1):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os.killpg(0, signal.SIGKILL)


def _worker_entry(
    *,
    queue: str,
    node: int,
    slots: Any,
    index: int,
    cancel_rows: Any,
    lifeline: tuple[int, int],
) -> None:
    os.setpgid(0, 0)
    read_end, write_end = lifeline
    os.close(write_end)
    threading.Thread(target=_watch, args=(read_end,), daemon=True, name="lifeline").start()
    base = index * _SLOT

    def slot(row_id: int, attempt: int, deadline: float) -> None:
        # The deadline is cleared first and written last: the supervisor never reads a
        # deadline with another task's row id.
        slots[base + 2] = 0.0
        slots[base] = float(row_id)
        slots[base + 1] = float(attempt)
        slots[base + 2] = deadline

    def cancels(row_id: int) -> bool:
        count = int(cancel_rows[0])
        return bool(count) and float(row_id) in cancel_rows[1 : count + 1]

    worker_main(queue=queue, node=node, slot=slot, cancels=cancels)


def serve(*, run_once: bool = False) -> None:
    Supervisor().serve(run_once=run_once)
