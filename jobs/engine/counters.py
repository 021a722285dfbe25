"""Counting finished runs for /healthz, cheaply.

A worker process counts each finished run once its outcome is saved
(``jobs.engine.worker``). Writing a row per run would double the cost of a quick
task, so the worker adds to in-memory counts per (minute, cluster) and writes them
with one upsert per minute bucket at most about once a second; a timer writes the
tail of a burst, and a stopping worker writes the rest. Counts that could not be
written (database down) are kept and written by a later flush. A run counted in
the last second before a worker is killed is lost: the figures are for operators,
not for accounting.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.db import connection, connections
from django.db.models import Sum
from django.utils import timezone
from django_q.conf import Conf

from jobs.models import TaskCounter

logger = structlog.stdlib.get_logger("jobs.engine.counters")

FLUSH_INTERVAL_SECONDS = 1.0
# Buckets older than this are deleted by the heartbeat job.
RETENTION = timedelta(days=2)

_lock = threading.Lock()
_pending: dict[tuple[datetime, str], list[int]] = {}
_last_flush = 0.0
_timer: threading.Timer | None = None

_TABLE = TaskCounter._meta.db_table
_UPSERT = (
    f"INSERT INTO {_TABLE} (minute, cluster, succeeded, failed) VALUES (%s, %s, %s, %s) "  # noqa: S608
    "ON CONFLICT (minute, cluster) DO UPDATE SET "
    f"succeeded = {_TABLE}.succeeded + excluded.succeeded, "
    f"failed = {_TABLE}.failed + excluded.failed"
)


def count_run(*, success: bool, cluster: str | None = None, at: datetime | None = None) -> None:
    """Count one finished run; written now or within about a second."""
    global _timer
    minute = (at or timezone.now()).replace(second=0, microsecond=0)
    key = (minute, (cluster or Conf.CLUSTER_NAME or "")[:100])
    with _lock:
        counts = _pending.setdefault(key, [0, 0])
        counts[0 if success else 1] += 1
        # Outside a cluster (sync mode, tests) write at once: a timer thread would
        # write on its own connection, outside the caller's transaction.
        due = not _in_cluster_process() or time.monotonic() - _last_flush >= FLUSH_INTERVAL_SECONDS
        if not due and _timer is None:
            _timer = threading.Timer(FLUSH_INTERVAL_SECONDS, _flush_from_timer)
            _timer.daemon = True
            _timer.start()
    if due:
        flush()


def _in_cluster_process() -> bool:
    return not Conf.SYNC and multiprocessing.parent_process() is not None


def flush() -> int:
    """Write the pending counts; returns how many buckets were written."""
    global _last_flush
    with _lock:
        batch = dict(_pending)
        _pending.clear()
        _last_flush = time.monotonic()
    if not batch:
        return 0
    written = 0
    try:
        with connection.cursor() as cursor:
            for (minute, cluster), (succeeded, failed) in batch.items():
                cursor.execute(_UPSERT, [minute, cluster, succeeded, failed])
                written += 1
                batch[(minute, cluster)] = [0, 0]
    except Exception:
        logger.exception("task counters not written", buckets=len(batch) - written)
        _keep_for_next_flush(batch)
        # A worker has no request cycle to drop a broken connection: without
        # this, every later flush would fail on it after the database is back.
        if not connection.in_atomic_block:
            connection.close()
        return written
    return written


def _keep_for_next_flush(batch: dict[tuple[datetime, str], list[int]]) -> None:
    """Put unwritten counts back (merged with newer ones); too old buckets are dropped."""
    oldest = timezone.now() - RETENTION
    with _lock:
        for key, (succeeded, failed) in batch.items():
            if (succeeded or failed) and key[0] >= oldest:
                counts = _pending.setdefault(key, [0, 0])
                counts[0] += succeeded
                counts[1] += failed


def _flush_from_timer() -> None:
    global _timer
    with _lock:
        _timer = None
    try:
        flush()
    finally:
        # This thread's own connection: never leave it open.
        connections.close_all()


def on_post_execute(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    """Count a finished run (the worker calls it after the outcome is saved). Never raises."""
    try:
        if task:
            count_run(success=bool(task.get("success")), cluster=task.get("cluster"))
    except Exception:
        logger.exception("task counter failed")


def totals_since(since: datetime) -> dict[str, int]:
    """Runs finished since ``since`` (minute resolution)."""
    floor = since.replace(second=0, microsecond=0)
    sums = TaskCounter.objects.filter(minute__gte=floor).aggregate(
        succeeded=Sum("succeeded"), failed=Sum("failed")
    )
    return {"succeeded": sums["succeeded"] or 0, "failed": sums["failed"] or 0}


def prune(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - RETENTION
    deleted, _ = TaskCounter.objects.filter(minute__lt=cutoff).delete()
    return deleted
