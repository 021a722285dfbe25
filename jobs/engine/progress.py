"""What a running job tells, and is told: progress reports shown to operators while it
runs (/healthz, admin), and whether an operator asked it to stop."""

from __future__ import annotations

import time

from jobs.engine import context, transitions

# Outside a qcluster worker the row is read, at most this often per task.
_READ_EVERY_SECONDS = 0.5
_last_read: dict[int, tuple[float, bool]] = {}


def report_progress(*, done: int, total: int | None = None, message: str = "") -> bool:
    """Record how far the running task is. Returns False outside a worker task."""
    run = context.running()
    if run is None or run.task_id is None:
        return False
    transitions.set_progress(task_id=run.task_id, done=done, total=total, message=message)
    return True


def cancel_requested() -> bool:
    """True once an operator asked the running task to stop (False outside a worker task).

    Check it at the task's safe points and return (or raise ``errors.Cancelled``): the
    attempt then ends ``cancelled``. A task that never checks is killed with its worker
    process once the cancel's grace has passed. In a qcluster worker the answer comes
    from memory its supervisor writes (no database query): call it as often as you like.
    """
    run = context.running()
    if run is None or run.row_id is None:
        return False
    probe = context.cancel_probe()
    if probe is not None:
        return probe(run.row_id)
    now = time.monotonic()
    seen = _last_read.get(run.row_id)
    if seen is not None and now - seen[0] < _READ_EVERY_SECONDS:
        return seen[1]
    answer = transitions.cancel_requested(alias=run.alias, row_id=run.row_id)
    _last_read.clear()  # one task at a time: keep only its entry
    _last_read[run.row_id] = (now, answer)
    return answer
