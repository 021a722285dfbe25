"""Waiting on a condition, with a deadline (never a bare sleep that hopes it is long enough)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.01
) -> float:
    """Poll ``predicate`` until true; the seconds it took, or AssertionError at the deadline."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
