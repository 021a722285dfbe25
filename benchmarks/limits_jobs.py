"""Jobs the flow-control benchmark enqueues (imported by the qcluster it starts)."""

from __future__ import annotations

import time

from jobs.engine.registry import job

# How long a task of the binding case runs, and its limit: at most LIMIT at once. The
# jobs that need a limit (S3 purges, cleanups) run for seconds; 200 ms keeps it short.
BOUND_SECONDS = 0.2
BOUND_LIMIT = 2


@job("bench.free")
def free() -> None:
    """No limit: the drain's baseline."""


@job("bench.loose", concurrency=100_000)
def loose() -> None:
    """A concurrency limit that never binds: what the limited claim itself costs."""


@job("bench.bound", concurrency=BOUND_LIMIT)
def bound() -> None:
    """A limit that binds: four workers, two slots."""
    time.sleep(BOUND_SECONDS)
