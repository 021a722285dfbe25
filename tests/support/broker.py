"""Task functions and helpers for the broker tests (importable by a real qcluster)."""

from __future__ import annotations

from pathlib import Path

from django_q.tasks import async_task

from jobs.engine.registry import job


def noop(*args: object, **kwargs: object) -> None:
    """A task that does nothing."""


def touch(path: str, text: str = "done") -> None:
    """A task with a visible effect: write ``text`` to ``path``.

    Written aside and renamed, so a test waiting for the file to exist reads it whole.
    """
    partial = Path(f"{path}.partial")
    partial.write_text(text)
    partial.replace(path)


@job("tests.broker_unique", unique=lambda key: f"broker-test:{key}")
def unique_task(key: str) -> None:
    """A registered job with one active task per key."""


def enqueue_noop(*args: object, **kwargs: object) -> str:
    return async_task(noop, *args, **kwargs)
