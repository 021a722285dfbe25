"""Worker nodes: a claimed task belongs to a live node, never to a lock time.

A node is one ``manage.py qcluster`` process (``jobs.management.commands.qcluster``).
It registers a ``WorkerNode`` row at start; its forked worker processes inherit the
node id and stamp it on every row they claim (``Job.owner``), and finishes and
failure reports only count for rows the node still owns. A thread of the main process beats every
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
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.functions import Now
from django.utils import timezone

from jobs.engine import context, transitions
from jobs.engine.context import current_node_id as current_node_id  # part of the API
from jobs.models import WorkerNode

logger = structlog.stdlib.get_logger("jobs.engine.nodes")


def heartbeat_seconds() -> float:
    return float(settings.JOBS_NODE_HEARTBEAT_SECONDS)


def dead_after_seconds() -> float:
    return float(settings.JOBS_NODE_DEAD_AFTER_SECONDS)


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
def register(
    *, cluster: str, alias: str = DEFAULT_DB_ALIAS, managed: bool = True, workers: int = 1
) -> int:
    """Register this process as a node of ``cluster``; returns its id.

    ``managed``: the caller beats for it (``Heartbeat``) and rejoins when declared dead.
    ``workers``: how many processes claim for it (the limited claim counts them).
    """
    pid = os.getpid()
    node = WorkerNode.objects.using(alias).create(
        cluster=cluster[:100],
        host=hostname(),
        pid=pid,
        process_key=process_key(pid),
        started_at=Now(),
        last_beat_at=Now(),
        workers=max(1, min(workers, 32767)),
    )
    context.set_node(node.id, managed=managed)
    logger.info("worker node registered", node=node.id, cluster=cluster, pid=pid)
    return node.id


def claiming_node_id(*, cluster: str, alias: str = DEFAULT_DB_ALIAS) -> int:
    """The node a claim in this process is made for.

    Outside ``qcluster`` (a script or test calling the broker) the process registers
    itself on its first claim; it never beats, so peers take its tasks back once
    ``JOBS_NODE_DEAD_AFTER_SECONDS`` pass or its process ends; a later claim of it
    registers again once it was declared dead.
    """
    node_id = current_node_id()
    if node_id is not None and context.node_is_managed():
        return node_id
    if (
        node_id is not None
        and WorkerNode.objects.using(alias)
        .filter(id=node_id, dead_at__isnull=True, stopped_at__isnull=True)
        .exists()
    ):
        return node_id
    return register(cluster=cluster, alias=alias, managed=False)


def forget() -> None:
    """This process is no node any more (its next claim registers a new one)."""
    context.set_node(None)


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
        held = transitions.take_node(
            node_id, alias=alias, reason="the worker node stopped before this attempt reported"
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
        held = transitions.take_node(
            node_id,
            alias=alias,
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
    me = current_node_id()
    if me is not None:
        live = live.exclude(id=me)
    rescued = 0
    for node in live.only("id", "host", "pid", "process_key", "last_beat_at"):
        if node.last_beat_at < cutoff:
            why = f"no heartbeat for {(now - node.last_beat_at).total_seconds():.0f} s"
        elif _gone_from_this_machine(node):
            why = "its process is gone"
        else:
            continue
        rescued += declare_dead(node.id, why=why, alias=alias) or 0
    return rescued + transitions.rescue_ownerless(cutoff=cutoff, alias=alias)


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
        rescue_dead_nodes(alias=self.alias)
        # Tasks no worker claimed before their deadline (a claimed one is checked at start).
        transitions.expire_due(alias=self.alias)

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
