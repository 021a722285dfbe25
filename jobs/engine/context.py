"""What this process knows about itself as a worker: its node, and the task it runs."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django_q.conf import Conf

# A started attempt of a task: (its Job row id, the attempt number).
AckId = tuple[int, int]


@dataclass(frozen=True)
class Run:
    """The task this process runs now (``jobs.engine.worker`` sets it around each attempt)."""

    task_id: str | None
    attempt: int
    cluster: str
    host: str
    pid: int
    row_id: int | None = None
    alias: str = "default"
    task: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


_current_run: ContextVar[Run | None] = ContextVar("jobs_current_run", default=None)
# The finished task whose chain's next link is being enqueued (see following()).
_following: ContextVar[dict[str, Any] | None] = ContextVar("jobs_following", default=None)

# The node of this process, set by jobs.engine.nodes.register(); forked children inherit it.
_node_id: int | None = None
# True when the node was registered by a claim outside qcluster (no heartbeat).
_unmanaged = False


@functools.cache
def _hostname(pid: int) -> str:
    # Asked once per process (keyed by pid: a forked worker asks again), not per task.
    return socket.gethostname()


def hostname() -> str:
    return _hostname(os.getpid())


def current_run() -> Run:
    """The running task; outside a worker task, this process with no task."""
    run = _current_run.get()
    if run is not None:
        return run
    cluster = Conf.CLUSTER_NAME or ""
    return Run(task_id=None, attempt=0, cluster=cluster, host=hostname(), pid=os.getpid())


def running() -> Run | None:
    """The running task, or None outside a worker task."""
    return _current_run.get()


def enter(run: Run | None) -> None:
    _current_run.set(run)


def following() -> dict[str, Any] | None:
    """While a chain's next link is enqueued: the package of the link that finished
    (a ``pre_enqueue`` receiver may carry something of it on); None otherwise."""
    return _following.get()


@contextlib.contextmanager
def follow_up(task: dict[str, Any]) -> Iterator[None]:
    token = _following.set(task)
    try:
        yield
    finally:
        _following.reset(token)


def current_node_id() -> int | None:
    """The node this process belongs to (None outside a qcluster that claimed nothing)."""
    return _node_id


def node_is_managed() -> bool:
    """False for a node registered by a claim outside qcluster (nobody beats for it)."""
    return not _unmanaged


def set_node(node_id: int | None, *, managed: bool = True) -> None:
    global _node_id, _unmanaged
    _node_id, _unmanaged = node_id, not managed


# Whether a cancel was asked for the task of a row id, as this process learns it: a
# qcluster worker reads memory its supervisor writes (jobs.engine.supervisor). None
# outside one (the row is read instead).
_cancel_probe: Callable[[int], bool] | None = None


def set_cancel_probe(probe: Callable[[int], bool] | None) -> None:
    global _cancel_probe
    _cancel_probe = probe


def cancel_probe() -> Callable[[int], bool] | None:
    return _cancel_probe
