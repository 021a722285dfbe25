"""Functions the django-q2 API tests run in a real cluster (imported by dotted path).

Hooks and links record what happened in the file named by ``API_TEST_LOG`` (one
JSON line each), which the test process reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jobs.engine.errors import DoNotRetry


def _record(**fields: Any) -> None:
    path = os.environ.get("API_TEST_LOG")
    if path:
        with Path(path).open("a") as log:
            log.write(json.dumps(fields) + "\n")


def add(a: int, b: int) -> int:
    return a + b


def link(name: str, *, fail: bool = False) -> str:
    """A chain link: records that it ran, in order; fails for good if asked to."""
    _record(kind="link", name=name)
    if fail:
        raise DoNotRetry(f"link {name} fails on purpose")
    return name


def gives_up() -> None:
    raise DoNotRetry("no point in retrying")


def hook(task: Any) -> None:
    """A ``hook=``: django-q2 calls it with the finished ``Task``."""
    _record(
        kind="hook",
        id=task.id,
        success=task.success,
        result=task.result if task.success else str(task.result)[:200],
        type=type(task).__name__,
    )
