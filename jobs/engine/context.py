"""What this process knows about itself as a worker: its node, and the task it runs."""

from __future__ import annotations

from contextvars import ContextVar

# A claimed run of a task: (its key in the broker, the attempt number).
AckId = tuple[int, int]

# Set by the worker runtime (jobs.engine.runtime) around each task run.
current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)

# The node of this process, set by jobs.engine.nodes.register(); forked children inherit it.
_node_id: int | None = None
# True when the node was registered by a claim outside qcluster (no heartbeat).
_unmanaged = False


def current_node_id() -> int | None:
    """The node this process belongs to (None outside a qcluster that claimed nothing)."""
    return _node_id


def node_is_managed() -> bool:
    """False for a node registered by a claim outside qcluster (nobody beats for it)."""
    return not _unmanaged


def set_node(node_id: int | None, *, managed: bool = True) -> None:
    global _node_id, _unmanaged
    _node_id, _unmanaged = node_id, not managed
