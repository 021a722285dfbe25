"""Tasks the queue benchmark enqueues (imported by the qcluster it starts)."""

from __future__ import annotations

import os
import time


def noop() -> None:
    """The drain benchmark's task: nothing, so the queue path is all that is timed."""


def stamp(enqueued_at: float, path: str) -> None:
    """Append 'enqueued_at started_at' (epoch seconds) to ``path``, one line per task."""
    started = time.time()
    line = f"{enqueued_at:.6f} {started:.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write() on O_APPEND: lines from 2 workers never interleave
    finally:
        os.close(fd)
