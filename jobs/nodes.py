"""Worker nodes: a claimed task belongs to a live node, never to a lock time.

A node is one ``manage.py qcluster`` process (``jobs.management.commands.qcluster``).
It registers a ``WorkerNode`` row at start; its forked children (pusher, workers,
monitor) inherit the node id, the broker stamps it on every row it claims
(``Job.owner``) and acknowledgements and failure reports only count for rows the
node still owns. A thread of the main process beats every
``JOBS_NODE_HEARTBEAT_SECONDS`` and looks for dead peers.

A node is dead when its beats stopped for ``JOBS_NODE_DEAD_AFTER_SECONDS``
(process killed, host lost, database link cut), or at once when it ran on this
machine and its process is gone. Whoever finds it dead first (a peer's beat, or a
restarted node at start) marks it ``dead_at`` and hands out again every task it
held: one ``WorkerLost`` attempt is recorded and the row is ready to claim, or dead
if that was its last attempt. A node that finds itself declared dead (its link came
back) rejoins with no claims: the rows it held were taken from it in the same
transaction that declared it dead.

On PostgreSQL a claim holds a share lock on its node's row and requires the node
not to be dead, and declaring a node dead takes that row's exclusive lock first,
so a claim and a rescue of the same node are serialized. On SQLite the write lock
does the same.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from jobs import backend, inflight
from jobs.channels import notify
from jobs.failures.records import WorkerInfo, record_failure
from jobs.models import Job, JobAttempt, WorkerNode

logger = structlog.stdlib.get_logger("jobs.nodes")

AckId = tuple[int, int]  # (Job.id, attempt)
# What handing a row out again needs to read.
_RESCUE_FIELDS = ("id", "task_id", "attempt", "max_attempts", "func", "job_name", "queue")

# The node of this process, set by register(); forked children inherit it.
_node_id: int | None = None
# True when the node was registered by a claim outside qcluster (no heartbeat).
_unmanaged = False


def heartbeat_seconds() -> float:
    return float(settings.JOBS_NODE_HEARTBEAT_SECONDS)


def dead_after_seconds() -> float:
    return float(settings.JOBS_NODE_DEAD_AFTER_SECONDS)


def current_node_id() -> int | None:
    """The node this process belongs to (None outside a qcluster that claimed nothing)."""
    return _node_id


# -- identity of a process on this machine --------------------------------------------
def hostname() -> str:
    return socket.gethostname()[:255]


@functools.cache
def _machine_key() -> str:
    """This boot of this machine and its pid namespace: where a pid means one process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/{pidns}"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart).

    Empty for a process that is gone, or killed and not reaped yet (a zombie).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return "" if fields[0] in ("Z", "X") else fields[19]


def process_key(pid: int) -> str:
    machine = _machine_key()
    return f"{machine}/{_process_start(pid)}" if machine else ""


def _gone_from_this_machine(node: WorkerNode) -> bool:
    """True when ``node`` ran in this machine's pid namespace and its process is gone."""
    machine = _machine_key()
    if not machine or not node.process_key.startswith(machine + "/"):
        return False  # another machine or container: only its beats tell
    return process_key(node.pid) != node.process_key


# -- the node's life ------------------------------------------------------------------
def register(*, cluster: str, alias: str = DEFAULT_DB_ALIAS, managed: bool = True) -> int:
    """Register this process as a node of ``cluster``; returns its id.

    ``managed``: the caller beats for it (``Heartbeat``) and rejoins when declared dead.
    """
    global _node_id, _unmanaged
    pid = os.getpid()
    node = WorkerNode.objects.using(alias).create(
        cluster=cluster[:100],
        host=hostname(),
        pid=pid,
        process_key=process_key(pid),
        started_at=Now(),
        last_beat_at=Now(),
    )
    _node_id, _unmanaged = node.id, not managed
    logger.info("worker node registered", node=node.id, cluster=cluster, pid=pid)
    return node.id


def claiming_node_id(*, cluster: str, alias: str = DEFAULT_DB_ALIAS) -> int:
    """The node a claim in this process is made for.

    Outside ``qcluster`` (a script or test calling the broker) the process registers
    itself on its first claim; it never beats, so peers take its tasks back once
    ``JOBS_NODE_DEAD_AFTER_SECONDS`` pass or its process ends; a later claim of it
    registers again once it was declared dead.
    """
    if _node_id is not None and not _unmanaged:
        return _node_id
    if (
        _node_id is not None
        and WorkerNode.objects.using(alias)
        .filter(id=_node_id, dead_at__isnull=True, stopped_at__isnull=True)
        .exists()
    ):
        return _node_id
    return register(cluster=cluster, alias=alias, managed=False)


def forget() -> None:
    """This process is no node any more (its next claim registers a new one)."""
    global _node_id, _unmanaged
    _node_id, _unmanaged = None, False


def beat(node_id: int, *, alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Prove the node alive. False when a peer had declared it dead (it rejoins now)."""
    nodes = WorkerNode.objects.using(alias).filter(id=node_id)
    if nodes.filter(dead_at__isnull=True).update(last_beat_at=Now()):
        return True
    # Its claims were handed out when it was declared dead: it rejoins with none,
    # and results of tasks it still runs are discarded (they are not its own any more).
    # A row deleted by hand is written again: the node's processes carry its id.
    pid = os.getpid()
    WorkerNode.objects.using(alias).update_or_create(
        id=node_id,
        defaults={"dead_at": None, "stopped_at": None, "last_beat_at": Now()},
        create_defaults={
            "cluster": "",
            "host": hostname(),
            "pid": pid,
            "process_key": process_key(pid),
            "started_at": Now(),
            "last_beat_at": Now(),
        },
    )
    backend.current().rejoin(node_id)
    logger.warning(
        "worker node was declared dead by a peer (its tasks were handed out again); rejoining",
        node=node_id,
    )
    return False


def stop(node_id: int, *, alias: str = DEFAULT_DB_ALIAS) -> int:
    """A clean end: mark the node stopped and hand out whatever it still holds."""
    with transaction.atomic(using=alias):
        WorkerNode.objects.using(alias).filter(id=node_id).update(
            stopped_at=Now(), last_beat_at=Now()
        )
        held = backend.current().take_node(
            node_id, reason="the worker node stopped before this attempt reported"
        )
    logger.info("worker node stopped", node=node_id, tasks_handed_out=held)
    return held


def declare_dead(node_id: int, *, why: str, alias: str = DEFAULT_DB_ALIAS) -> int | None:
    """Declare the node dead and hand out its tasks; None if it was not live any more."""
    with transaction.atomic(using=alias):
        # The row lock taken here waits for a claim of this node in progress (it
        # holds a share lock) and makes every later claim of it find it dead.
        if (
            not WorkerNode.objects.using(alias)
            .filter(id=node_id, dead_at__isnull=True, stopped_at__isnull=True)
            .update(dead_at=Now())
        ):
            return None
        node = WorkerNode.objects.using(alias).get(id=node_id)
        held = backend.current().take_node(
            node_id,
            reason=f"the worker node {node} running this attempt was declared dead ({why})",
        )
        WorkerNode.objects.using(alias).filter(id=node_id).update(tasks_rescued=held)
    logger.warning(
        "worker node declared dead",
        node=node_id,
        cluster=node.cluster,
        host=node.host,
        pid=node.pid,
        why=why,
        tasks_handed_out=held,
    )
    return held


def rescue_dead_nodes(*, alias: str = DEFAULT_DB_ALIAS) -> int:
    """Declare dead every peer that stopped beating or whose process is gone.

    Returns the number of tasks handed out again.
    """
    now = db_now(alias)
    cutoff = now - timedelta(seconds=dead_after_seconds())
    live = WorkerNode.objects.using(alias).filter(stopped_at__isnull=True, dead_at__isnull=True)
    if _node_id is not None:
        live = live.exclude(id=_node_id)
    rescued = 0
    for node in live.only("id", "host", "pid", "process_key", "last_beat_at"):
        if node.last_beat_at < cutoff:
            why = f"no heartbeat for {(now - node.last_beat_at).total_seconds():.0f} s"
        elif _gone_from_this_machine(node):
            why = "its process is gone"
        else:
            continue
        rescued += declare_dead(node.id, why=why, alias=alias) or 0
    return rescued + _rescue_ownerless(cutoff=cutoff, alias=alias)


def _rescue_ownerless(*, cutoff: datetime, alias: str) -> int:
    """Running rows with no owner (claimed before nodes existed): lost, hand them out."""
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update(skip_locked=True)
            .filter(state=Job.State.RUNNING, owner__isnull=True, claimed_at__lt=cutoff)
            .only(*_RESCUE_FIELDS)
            .order_by("id")[:500]
        )
        hand_out_again(rows, reason="its worker predates node ownership", alias=alias)
    return len(rows)


def hand_out_lost(node_id: int, acks: Sequence[AckId], *, alias: str = DEFAULT_DB_ALIAS) -> int:
    """Tasks whose worker process died inside a live node: a lost attempt each."""
    if not acks:
        return 0
    count = backend.current().hand_out_lost(node_id, acks)
    if count:
        logger.warning("tasks of a dead worker process handed out again", count=count)
    return count


def hand_back(node_id: int, ack_ids: Sequence[AckId], *, alias: str = DEFAULT_DB_ALIAS) -> int:
    """Return claimed tasks that never started: ready again, no attempt used."""
    return backend.current().hand_back(node_id, ack_ids) if ack_ids else 0


# -- the jobs.Job table's side (jobs.backend.DatabaseBackend) -----------------------
def hand_out_lost_rows(node_id: int, acks: Sequence[AckId], *, alias: str) -> int:
    with transaction.atomic(using=alias):
        rows = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(_attempts(acks), owner=node_id, state=Job.State.RUNNING)
            .only(*_RESCUE_FIELDS)
        )
        hand_out_again(rows, reason="the worker process running this attempt died", alias=alias)
    return len(rows)


def hand_back_rows(node_id: int, ack_ids: Sequence[AckId], *, alias: str) -> int:
    with transaction.atomic(using=alias):
        rows = Job.objects.using(alias).filter(
            _attempts(ack_ids), owner=node_id, state=Job.State.RUNNING
        )
        queues = set(rows.values_list("queue", flat=True))
        count = rows.update(
            state=_ready_state(),
            attempt=F("attempt") - 1,
            owner=None,
            claimed_at=None,
            claimed_by="",
        )
        notify(alias, queues)
    return count


def _attempts(acks: Sequence[AckId]) -> Q:
    """The rows at exactly these (id, attempt) pairs."""
    q = Q(pk__in=[])
    for row_id, attempt in acks:
        q |= Q(id=row_id, attempt=attempt)
    return q


def _ready_state() -> Case:
    """A ready row is ``retrying`` once it has failed (the Failed tasks page lists it)."""
    return Case(
        When(last_failed_at__isnull=True, then=Value(Job.State.QUEUED)),
        default=Value(Job.State.RETRYING),
    )


def take_running(node_id: int, *, alias: str) -> list[Job]:
    return list(
        Job.objects.using(alias)
        .select_for_update()
        .filter(owner=node_id, state=Job.State.RUNNING)
        .only(*_RESCUE_FIELDS)
        .order_by("id")
    )


def lost_attempt_is_last(task: Any) -> bool:
    return bool(task.max_attempts) and task.attempt >= task.max_attempts


def record_lost_attempts(
    tasks: Iterable[Any], *, reason: str, alias: str, now: datetime | None = None
) -> None:
    """``WorkerLost`` history for tasks handed out again (not their last attempt).

    ``tasks``: anything with ``task_id``, ``attempt``, ``func`` and ``job_name``.
    """
    now = now or timezone.now()
    JobAttempt.objects.using(alias).bulk_create(
        [
            JobAttempt(
                task_id=task.task_id,
                attempt=task.attempt,
                func=task.func,
                job_name=task.job_name,
                succeeded=False,
                finished_at=now,
                error_type="WorkerLost",
                error_message=f"{reason}; the task was handed out again",
            )
            for task in tasks
        ]
    )


def record_lost_last_attempt(task: Any, *, reason: str, now: datetime | None = None) -> None:
    """A task lost at its last allowed attempt is dead (its ``Job`` row must exist)."""
    record_failure(
        task_id=task.task_id,
        attempt=task.attempt,
        error_type="WorkerLost",
        error_message=f"{reason}; attempt {task.attempt} was the last allowed",
        finished_at=now or timezone.now(),
        retry_at=None,
        worker=WorkerInfo(),
    )


def hand_out_again(rows: Iterable[Job], *, reason: str, alias: str) -> None:
    """Record the lost attempt of each row and make it ready (or dead at its last attempt)."""
    rows = list(rows)
    if not rows:
        return
    now = timezone.now()
    last = [r for r in rows if lost_attempt_is_last(r)]
    again = [r for r in rows if r not in last]
    for job in last:
        record_lost_last_attempt(job, reason=reason, now=now)
    if again:
        record_lost_attempts(again, reason=reason, alias=alias, now=now)
        Job.objects.using(alias).filter(id__in=[job.id for job in again]).update(
            state=_ready_state(), owner=None, claimed_at=None, claimed_by=""
        )
        notify(alias, {job.queue for job in again})


def db_now(alias: str = DEFAULT_DB_ALIAS) -> datetime:
    """The database's clock on PostgreSQL (nodes on several hosts compare beats to it)."""
    db = connections[alias]
    if db.vendor != "postgresql":
        return timezone.now()
    with db.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        stamp: datetime = cursor.fetchone()[0]
        return stamp


@dataclass
class Heartbeat:
    """Beats for a node from a daemon thread and declares dead peers dead."""

    node_id: int
    alias: str = DEFAULT_DB_ALIAS

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs-node-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=max(heartbeat_seconds() * 2, 5.0))

    def tick(self) -> None:
        beat(self.node_id, alias=self.alias)
        hand_out_lost(self.node_id, inflight.lost(), alias=self.alias)
        rescue_dead_nodes(alias=self.alias)

    def _run(self) -> None:
        db = connections[self.alias]
        try:
            while not self._stopping.wait(heartbeat_seconds()):
                try:
                    db.close_if_unusable_or_obsolete()
                    self.tick()
                except Exception:
                    # The database may be unreachable: peers will see the silence.
                    logger.exception("worker node heartbeat failed", node=self.node_id)
                    db.close()
        finally:
            db.close()
