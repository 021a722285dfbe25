"""Run counts and figures (runs, failures, durations) and queue depth samples, for
/healthz, the dashboard (jobs.dashboard) and /metrics (jobs.metrics).

Writing a row per run would double the cost of a quick task, so a worker process
adds each finished run to in-memory sums and writes them about once a second (a
timer writes the tail of a burst, a stopping worker writes the rest): one upsert per
(span, start, queue, function) for the minute, the hour and the running total
(``JobStat``). Sums that could not be written (database down) are kept and written by
a later flush, so an outage loses no count; a run counted in the last second before
a worker is killed is lost. The heartbeat job samples its queue's depth once per beat
(``QueueSample``) and prunes old rows.
"""

from __future__ import annotations

import bisect
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django_q.conf import Conf
from django_q.utils import get_func_repr

from jobs.engine import backend
from jobs.models import DURATION_BOUNDS, Job, JobStat, QueueSample

logger = structlog.stdlib.get_logger("jobs.engine.stats")

FLUSH_INTERVAL_SECONDS = 1.0
MINUTE_RETENTION = timedelta(days=2)
HOUR_RETENTION = timedelta(days=35)
SAMPLE_RETENTION = timedelta(days=8)
# The start of every ``total`` row: one row per queue and function, never pruned.
TOTAL_START = datetime(2000, 1, 1, tzinfo=UTC)

_TABLE = JobStat._meta.db_table
_BUCKETS = JobStat.BUCKET_FIELDS
_ADDED = ("succeeded", "failed", "duration_sum", *_BUCKETS)
_COLUMNS: tuple[str, ...] = (
    "span",
    "start",
    "queue",
    "func",
    "succeeded",
    "failed",
    "duration_sum",
)
_COLUMNS = (*_COLUMNS, "last_failed_at", *_BUCKETS)
_UPSERT = (
    f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) "  # noqa: S608 (names from the model)
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
    "ON CONFLICT (span, start, queue, func) DO UPDATE SET "
    + ", ".join(f"{c} = {_TABLE}.{c} + excluded.{c}" for c in _ADDED)
    + f", last_failed_at = CASE WHEN excluded.last_failed_at IS NULL "
    f"THEN {_TABLE}.last_failed_at ELSE excluded.last_failed_at END"
)


@dataclass
class _Sums:
    succeeded: int = 0
    failed: int = 0
    duration_sum: float = 0.0
    last_failed_at: datetime | None = None
    buckets: list[int] = field(default_factory=lambda: [0] * len(_BUCKETS))

    def add(self, other: _Sums) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.duration_sum += other.duration_sum
        if other.last_failed_at and (
            self.last_failed_at is None or other.last_failed_at > self.last_failed_at
        ):
            self.last_failed_at = other.last_failed_at
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


_lock = threading.Lock()
_pending: dict[tuple[datetime, str, str], _Sums] = {}
_last_flush = 0.0


def _in_cluster_process() -> bool:
    # Outside a cluster (sync mode, tests) sums are written at once: a timer thread
    # would write on its own connection, outside the caller's transaction.
    return not Conf.SYNC and multiprocessing.parent_process() is not None


def bucket_index(seconds: float) -> int:
    """The histogram bucket of a duration: the first bound it does not exceed."""
    return bisect.bisect_left(DURATION_BOUNDS, seconds)


def count_run(
    *,
    func: str,
    queue: str,
    success: bool,
    duration: float | None,
    at: datetime | None = None,
) -> None:
    """Count one finished run; written now (outside a cluster), else with the runs of the
    next second, or before the worker waits idle (``flush_pending``)."""
    at = at or timezone.now()
    key = (at.replace(second=0, microsecond=0), queue[:100], func[:256])
    with _lock:
        sums = _pending.setdefault(key, _Sums())
        if success:
            sums.succeeded += 1
        else:
            sums.failed += 1
            sums.last_failed_at = at
        if duration is not None:
            sums.duration_sum += max(duration, 0.0)
            sums.buckets[bucket_index(duration)] += 1
        due = not _in_cluster_process() or time.monotonic() - _last_flush >= FLUSH_INTERVAL_SECONDS
    if due:
        flush()


def flush_pending() -> int:
    """Write the pending sums, if any (a worker process calls it before it waits idle).

    Written by the worker's own thread, on its own connection: a flush from a thread of
    its own could hang on a database outage holding sums the process then lost on exit."""
    return flush() if _pending else 0


def _rows(
    batch: dict[tuple[datetime, str, str], _Sums],
) -> dict[tuple[str, datetime, str, str], _Sums]:
    """Each minute's sums, also added to its hour and to the running total."""
    rows: dict[tuple[str, datetime, str, str], _Sums] = {}
    for (minute, queue, func), sums in batch.items():
        hour = minute.replace(minute=0)
        for span, start in (
            (JobStat.Span.MINUTE, minute),
            (JobStat.Span.HOUR, hour),
            (JobStat.Span.TOTAL, TOTAL_START),
        ):
            rows.setdefault((str(span), start, queue, func), _Sums()).add(sums)
    return rows


def flush() -> int:
    """Write the pending sums; returns how many rows were written."""
    global _last_flush
    with _lock:
        batch = dict(_pending)
        _pending.clear()
        _last_flush = time.monotonic()
    if not batch:
        return 0
    rows = _rows(batch)
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        [
            span,
            adapt(start),
            queue,
            func,
            s.succeeded,
            s.failed,
            s.duration_sum,
            adapt(s.last_failed_at),
            *s.buckets,
        ]
        # One order for every writer: two workers never wait on each other's rows.
        for (span, start, queue, func), s in sorted(rows.items(), key=lambda kv: kv[0])
    ]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Counts, not outcomes: no wait for the disk (another worker's flush of the
                # same rows waits for this commit); a server crash may lose the last instant.
                cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.executemany(_UPSERT, params)
    except Exception:
        logger.exception("job stats not written; kept for the next flush", rows=len(params))
        _keep_for_next_flush(batch)
        # A worker has no request cycle to drop a broken connection: without
        # this, every later flush would fail on it after the database is back.
        if not connection.in_atomic_block:
            connection.close()
        return 0
    return len(params)


def _keep_for_next_flush(batch: dict[tuple[datetime, str, str], _Sums]) -> None:
    """Put unwritten sums back (merged with newer ones); minutes past retention are dropped."""
    oldest = timezone.now() - MINUTE_RETENTION
    with _lock:
        for key, sums in batch.items():
            if key[0] >= oldest:
                _pending.setdefault(key, _Sums()).add(sums)


def _duration(task: dict[str, Any]) -> float | None:
    started, stopped = task.get("started_at"), task.get("stopped")
    if isinstance(started, datetime) and isinstance(stopped, datetime):
        return (stopped - started).total_seconds()
    return None


def on_post_execute(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    """Count a finished run (the worker calls it after the outcome is saved). Never raises."""
    try:
        if task:
            count_run(
                func=get_func_repr(task.get("func")),
                queue=str(task.get("cluster") or Conf.CLUSTER_NAME or ""),
                success=bool(task.get("success")),
                duration=_duration(task),
            )
    except Exception:
        logger.exception("job stats failed")


def totals_since(since: datetime) -> dict[str, int]:
    """Runs finished since ``since`` (minute resolution), every queue and job."""
    floor = since.replace(second=0, microsecond=0)
    sums = JobStat.objects.filter(span=JobStat.Span.MINUTE, start__gte=floor).aggregate(
        succeeded=Sum("succeeded"), failed=Sum("failed")
    )
    return {"succeeded": sums["succeeded"] or 0, "failed": sums["failed"] or 0}


# --- queue depth samples (the heartbeat job) -------------------------------------
def depth(queue: str | None = None, **options: Any) -> dict[str, dict[str, Any]]:
    """Tasks per queue and state now, and the oldest queued task's enqueue time
    (``states=``: count only those)."""
    return backend.depth(queue, **options)


def sample_queue(*, queue: str, now: datetime | None = None) -> QueueSample:
    """Record ``queue``'s depth for this minute (the last sample of a minute wins)."""
    now = now or timezone.now()
    entry = depth(queue).get(queue) or {}
    oldest = entry.get("oldest_queued")
    sample, _ = QueueSample.objects.update_or_create(
        minute=now.replace(second=0, microsecond=0),
        queue=queue[:100],
        defaults={
            "queued": entry.get(Job.State.QUEUED, 0),
            "retrying": entry.get(Job.State.RETRYING, 0),
            "running": entry.get(Job.State.RUNNING, 0),
            "dead": entry.get(Job.State.DEAD, 0),
            "oldest_queued_age": None if oldest is None else (now - oldest).total_seconds(),
        },
    )
    return sample


def prune(*, now: datetime | None = None) -> int:
    """Delete minute rows, hour rows and samples past their retention."""
    now = now or timezone.now()
    deleted = 0
    spans = ((JobStat.Span.MINUTE, MINUTE_RETENTION), (JobStat.Span.HOUR, HOUR_RETENTION))
    for span, keep in spans:
        deleted += JobStat.objects.filter(span=span, start__lt=now - keep).delete()[0]
    deleted += QueueSample.objects.filter(minute__lt=now - SAMPLE_RETENTION).delete()[0]
    return deleted
