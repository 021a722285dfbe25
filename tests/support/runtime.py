"""Jobs and helpers for the worker runtime tests (registered on import).

The worker process imports this module when it runs one of these tasks
(django-q2 locates the function by its dotted path), so the registrations
exist there too.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from django_q.conf import Conf

from jobs.engine.progress import report_progress
from jobs.engine.registry import job

logger = structlog.stdlib.get_logger("tests.runtime")


@job("tests.echo")
def echo(value: str) -> str:
    logger.info("inside job", value=value)
    return value


@job("tests.unique", unique=lambda key, *rest: f"tests.unique:{key}", priority=5, timeout=30)
def unique_job(key: str, *rest: Any) -> str:
    return key


@job("tests.boom")
def boom() -> None:
    raise RuntimeError("boom")


@job("tests.progress")
def progress(total: int) -> int:
    for done in range(1, total + 1):
        report_progress(done=done, total=total, message=f"step {done}")
    return total


@job("tests.slow", timeout=60)
def slow(seconds: float, marker: str) -> str:
    """Sleeps, then writes ``marker`` (a file path) and commits a row: proof it finished."""
    from jobs.models import WorkerHeartbeat

    logger.info("slow task sleeping", seconds=seconds)
    time.sleep(seconds)
    Path(marker).write_text("done")
    # Any committed write will do; this table is at hand and the test reads it back.
    WorkerHeartbeat.objects.create(cluster=f"tests.slow:{marker}"[:255])
    return marker


@contextmanager
def conf(**values: Any) -> Iterator[None]:
    """Patch django_q's Conf (override_settings does not reach it)."""
    saved = {name: getattr(Conf, name) for name in values}
    try:
        for name, value in values.items():
            setattr(Conf, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(Conf, name, value)


def events(caplog: Any, name: str) -> list[dict[str, Any]]:
    """The structlog event dicts logged with event ``name``."""
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def log_events(text: str, name: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of a worker log (``LOG_FORMAT=json``), optionally one event only."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if name is None or record.get("event") == name:
            found.append(record)
    return found


@job("tests.exit_process", max_attempts=5)
def exit_process(code: int) -> None:
    """Ends the worker process the way a crash or a C extension would: no exception."""
    os._exit(code)


@job("tests.kill_own_process", max_attempts=5)
def kill_own_process(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(60)  # the signal arrives first


@job("tests.ignore_timeout", timeout=1, max_attempts=2, backoff=lambda attempt: 3600)
def ignore_timeout(marker: str) -> None:
    """A task that swallows its timeout and keeps going, as a blocked C call would."""
    Path(marker).write_text("started")
    while True:
        try:
            time.sleep(0.05)
        except BaseException:  # noqa: S112 - the point: it will not stop
            continue


@job("tests.spawn_child")
def spawn_child(pidfile: str) -> None:
    """Starts a long-lived process and waits (the test kills the node meanwhile)."""
    child = subprocess.Popen(["sleep", "300"])
    tmp = Path(pidfile + ".tmp")
    tmp.write_text(str(child.pid))
    tmp.rename(pidfile)
    time.sleep(60)
