"""What the worker runtime knows about the task running in this process."""

from __future__ import annotations

from contextvars import ContextVar

# Set by the worker runtime (jobs.engine.runtime) around each task run.
current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)
