"""Jobs with limits for the flow-control tests (importable by a real qcluster), and what
their runs recorded: each run appends ``start end key`` (wall clock) to a file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from jobs.engine.registry import job


def _run(log: str, key: str, seconds: float) -> None:
    start = time.time()
    if seconds:
        time.sleep(seconds)
    line = f"{start:.6f} {time.time():.6f} {key}\n".encode()
    # One write with O_APPEND: lines of concurrent runs never interleave.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@job("tests.limited", concurrency=3)
def limited(log: str, seconds: float = 0.0) -> None:
    _run(log, "all", seconds)


@job("tests.limited_per_key", concurrency=3, concurrency_key=lambda log, group, seconds=0.0: group)
def limited_per_key(log: str, group: str, seconds: float = 0.0) -> None:
    _run(log, group, seconds)


@job("tests.rated", rate=(20, 4.0))
def rated(log: str, seconds: float = 0.0) -> None:
    _run(log, "all", seconds)


@job("tests.rated_per_key", rate=(2, 60.0), rate_key=lambda log, group: group)
def rated_per_key(log: str, group: str) -> None:
    _run(log, group, 0.0)


@job("tests.loose", concurrency=1000)
def loose(log: str) -> None:
    _run(log, "loose", 0.0)


@job("tests.unlimited")
def unlimited(log: str, seconds: float = 0.0) -> None:
    _run(log, "free", seconds)


def runs(log: Path) -> list[tuple[float, float, str]]:
    """(start, end, key) of every run recorded in ``log``."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        start, end, key = line.split()
        found.append((float(start), float(end), key))
    return found


def max_overlap(runs: list[tuple[float, float, str]], key: str | None = None) -> int:
    """The most runs (of ``key``, or all) that were running at one instant."""
    events = sorted(
        (t, kind)
        for start, end, k in runs
        if key is None or k == key
        for t, kind in ((start, 1), (end, -1))
    )  # at a tie an end (-1) sorts before a start: touching runs do not overlap
    most = current = 0
    for _t, kind in events:
        current += kind
        most = max(most, current)
    return most


def max_in_window(starts: list[float], seconds: float) -> int:
    """The most ``starts`` within any window of ``seconds`` (sliding)."""
    starts = sorted(starts)
    most = first = 0
    for last, t in enumerate(starts):
        while t - starts[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most
