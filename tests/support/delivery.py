"""Jobs the delivery tests run in a real cluster (imported there by their dotted path)."""

from __future__ import annotations

import time
from pathlib import Path

from jobs.engine.registry import job
from tests.reliability.jobs import record


def _slow_backoff(attempt: int) -> float:
    # The failure hook computes the backoff in the monitor: this makes the monitor
    # fall behind the workers, as a busy database or a slow hook would.
    time.sleep(0.4)
    return 0.01


@job("tests.fails_twice", max_attempts=5, backoff=_slow_backoff)
def fails_twice(key: str, marker_dir: str) -> str:
    """Fails on its first two runs, then applies its effect (``rel_effect``) once."""
    failures = sorted(Path(marker_dir).glob(f"{key}.*"))
    if len(failures) < 2:
        Path(marker_dir, f"{key}.{len(failures)}").write_text("failed")
        raise RuntimeError(f"attempt {len(failures) + 1} of {key} fails on purpose")
    return record(key)


@job("tests.longer_than_q_timeout", timeout=20)
def longer_than_q_timeout(seconds: float, marker: str) -> str:
    time.sleep(seconds)
    Path(marker).write_text("done")
    return marker


@job("tests.over_its_own_timeout", timeout=2, max_attempts=1)
def over_its_own_timeout(marker: str) -> None:
    time.sleep(30)
    Path(marker).write_text("should never be written")
