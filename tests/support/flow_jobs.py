"""Jobs the flow-control tests run in a real cluster (registered on import; the worker
imports this module by the tasks' dotted paths).

Each writes what it did into files the test reads: markers in a directory, or JSON
lines in the file named by ``FLOW_TEST_LOG`` (batch members and callbacks).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from jobs.engine.errors import Cancelled, DoNotRetry, Snooze
from jobs.engine.progress import cancel_requested
from jobs.engine.registry import job


def _mark(directory: str, name: str, text: str = "") -> None:
    # Written aside and renamed: a waiting test never reads half a marker.
    tmp = Path(directory, f".{name}.tmp")
    tmp.write_text(text)
    tmp.rename(Path(directory, name))


def _record(**fields: Any) -> None:
    path = os.environ.get("FLOW_TEST_LOG")
    if path:
        with Path(path).open("a") as log:
            log.write(json.dumps({**fields, "t": time.time(), "pid": os.getpid()}) + "\n")


@job("tests.flow.cooperative", timeout=120)
def cooperative(directory: str) -> str:
    """Works until asked to stop, checking at each step, then stops by raising."""
    _mark(directory, "cooperative.started")
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        if cancel_requested():
            _mark(directory, "cooperative.saw-cancel")
            raise Cancelled("stopping at a safe point")
        time.sleep(0.02)
    return "never asked"


@job("tests.flow.busy", timeout=120)
def busy(directory: str) -> None:
    """Never checks: a busy loop only a kill stops."""
    _mark(directory, "busy.started")
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        pass
    _mark(directory, "busy.finished")


@job("tests.flow.steady", timeout=60)
def steady(directory: str, seconds: float) -> str:
    """Another task on the same node: it must finish whatever happens to its neighbour."""
    _mark(directory, "steady.started")
    time.sleep(seconds)
    _mark(directory, "steady.finished")
    return "done"


@job("tests.flow.snoozer", max_attempts=3)
def snoozer(directory: str, times: int) -> Any:
    """Snoozes ``times`` times (raising and returning in turn), then gives up for good."""
    runs = len(list(Path(directory).glob("snoozer.run.*")))
    _mark(directory, f"snoozer.run.{runs}")
    if runs < times:
        if runs % 2:
            return Snooze(0.05)
        raise Snooze(0.05)
    raise DoNotRetry(f"ran {runs + 1} times")


@job("tests.flow.expiring", expires=3600)
def expiring(directory: str, key: str) -> None:
    """An expiring task: its marker proves it started."""
    _mark(directory, f"expiring.{key}")


@job("tests.flow.member", timeout=60)
def member(key: str, seconds: float) -> str:
    _record(kind="member", key=key, phase="start")
    time.sleep(seconds)
    _record(kind="member", key=key, phase="end")
    return key


def batch_done(summary: dict[str, Any]) -> None:
    """A batch callback by dotted path: records the summary it was called with."""
    _record(kind="callback", summary=summary)


@job("tests.flow.batch_failed")
def batch_failed(summary: dict[str, Any]) -> None:
    _record(kind="on_failure", summary=summary)
