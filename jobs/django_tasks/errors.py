"""Exceptions a Django task's ``TaskError`` may name, for failures that raised nothing."""

from __future__ import annotations

from jobs.engine.errors import DoNotRetry


class WorkerLost(Exception):
    """The worker running the attempt died (killed, out of memory, its node declared dead)."""


class UnreadablePayload(Exception):
    """The queued payload could not be decoded (SECRET_KEY or site name changed)."""


class ReturnValueNotJSON(DoNotRetry, TypeError):
    """The task's return value cannot be normalised to JSON, as Django's Tasks require.

    Final: running the task again would return the same kind of value.
    """


# Error types the engine records without an exception class of that name.
RECORDED_TYPES = {
    "WorkerLost": f"{__name__}.WorkerLost",
    "UnreadablePayload": f"{__name__}.UnreadablePayload",
}


def exception_class_path(error_type: str) -> str:
    """Django's ``TaskError.exception_class_path`` for an error type the engine recorded
    (bare for builtins, dotted otherwise)."""
    if error_type in RECORDED_TYPES:
        return RECORDED_TYPES[error_type]
    return error_type if "." in error_type else f"builtins.{error_type}"
