"""Reads behind the Overview page and /metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import F, Max, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from jobs import health, pauses
from jobs.engine import backend, registry, stats
from jobs.models import DURATION_BOUNDS, JobBatch, JobStat, QueuePause, QueueSample

DEPTH_FIELDS = ("queued", "retrying", "running", "dead")
# Ended without running to success, kept until discarded: counted now, not sampled.
ENDED_FIELDS = ("cancelled", "expired")
# Running tasks and batches the page lists.
RUNNING_SHOWN = 20
BATCHES_SHOWN = 10
LIMITS_SHOWN = 20


@dataclass(frozen=True)
class Window:
    """A chart's span: ``points`` buckets of ``step`` ending with the current one."""

    name: str
    span: str  # JobStat.Span
    step: timedelta
    points: int

    def starts(self, now: datetime) -> list[datetime]:
        last = now.replace(second=0, microsecond=0)
        if self.step >= timedelta(hours=1):
            last = last.replace(minute=0)
        return [last - self.step * i for i in range(self.points - 1, -1, -1)]


LAST_HOUR = Window("hour", JobStat.Span.MINUTE, timedelta(minutes=1), 60)
LAST_WEEK = Window("week", JobStat.Span.HOUR, timedelta(hours=1), 7 * 24)


def _label(start: datetime, window: Window) -> str:
    local = timezone.localtime(start)
    return f"{local:%H:%M}" if window is LAST_HOUR else f"{local:%a %H}h"


def throughput(*, window: Window, now: datetime) -> dict[str, list[Any]]:
    """Runs succeeded and failed per bucket (zeros where nothing ran)."""
    starts = window.starts(now)
    sums = {
        row["start"]: row
        for row in JobStat.objects.filter(span=window.span, start__gte=starts[0])
        .values("start")
        .annotate(succeeded=Sum("succeeded"), failed=Sum("failed"))
        .order_by()
    }
    found = [sums.get(s) for s in starts]
    return {
        "labels": [_label(s, window) for s in starts],
        "succeeded": [(row["succeeded"] or 0) if row else 0 for row in found],
        "failed": [(row["failed"] or 0) if row else 0 for row in found],
    }


def depth_series(*, window: Window, now: datetime) -> dict[str, list[Any]]:
    """Queue depth per bucket, every queue added up, and the oldest queued task's age.

    The heartbeat samples each queue once per beat; a minute bucket adds up the
    queues' samples, an hour bucket adds up each queue's largest sample of that hour
    (grouped in the database: 7 days are ~10,000 samples per queue).
    """
    starts = window.starts(now)
    rows = QueueSample.objects.filter(minute__gte=starts[0])
    if window.step >= timedelta(hours=1):
        rows = rows.annotate(bucket=TruncHour("minute", tzinfo=UTC))
    else:
        rows = rows.annotate(bucket=F("minute"))
    grouped = (
        rows.values("bucket", "queue")
        .annotate(**{name: Max(name) for name in DEPTH_FIELDS}, oldest=Max("oldest_queued_age"))
        .order_by()
    )
    buckets: dict[datetime, dict[str, float]] = {}
    for row in grouped:
        # The depth columns are annotated under names computed at run time.
        maxima: Mapping[str, Any] = row
        bucket = buckets.setdefault(row["bucket"], dict.fromkeys(DEPTH_FIELDS, 0) | {"oldest": 0.0})
        for name in DEPTH_FIELDS:
            bucket[name] += maxima[name]
        bucket["oldest"] = max(bucket["oldest"], row["oldest"] or 0.0)
    series: dict[str, list[Any]] = {"labels": [_label(s, window) for s in starts]}
    for name in (*DEPTH_FIELDS, "oldest"):
        series[name] = [(buckets.get(s) or {}).get(name) for s in starts]
    return series


def quantile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile of a duration histogram (JobStat buckets), interpolated
    within its bucket as Prometheus' ``histogram_quantile`` does; the slowest bucket
    has no upper bound, so its lower bound is returned."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            lower = DURATION_BOUNDS[i - 1] if i else 0.0
            if i >= len(DURATION_BOUNDS):
                return lower
            return lower + (DURATION_BOUNDS[i] - lower) * (rank - seen) / count
        seen += count
    return DURATION_BOUNDS[-1]


def job_table(*, now: datetime, hours: int = 24) -> list[dict[str, Any]]:
    """Per function over the last ``hours`` (hour rows): runs, failures, failure rate,
    p50 and p95 duration; and its last failure ever seen (the ``total`` rows)."""
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    sums = (
        JobStat.objects.filter(span=JobStat.Span.HOUR, start__gte=since)
        .values("func")
        .annotate(
            succeeded_sum=Sum("succeeded"),
            failed_sum=Sum("failed"),
            **{f"{b}_sum": Sum(b) for b in JobStat.BUCKET_FIELDS},
        )
        .order_by()
    )
    funcs = [row["func"] for row in sums]
    last_failed = dict(
        JobStat.objects.filter(span=JobStat.Span.TOTAL, func__in=funcs)
        .values("func")
        .annotate(last=Max("last_failed_at"))
        .values_list("func", "last")
        .order_by()
    )
    table = []
    for row in sums:
        runs = row["succeeded_sum"] + row["failed_sum"]
        # The bucket sums are annotated under names computed at run time.
        bucket_sums: Mapping[str, Any] = row
        buckets = [bucket_sums[f"{b}_sum"] for b in JobStat.BUCKET_FIELDS]
        spec = registry.for_func(row["func"])
        table.append(
            {
                "func": row["func"],
                "name": spec.name if spec else row["func"],
                "runs": runs,
                "failures": row["failed_sum"],
                "failure_rate": row["failed_sum"] / runs if runs else 0.0,
                "p50": quantile(buckets, 0.5),
                "p95": quantile(buckets, 0.95),
                "last_failed_at": last_failed.get(row["func"]),
            }
        )
    table.sort(key=lambda r: (-r["runs"], r["name"]))
    return table


def worker_nodes(*, now: datetime) -> list[dict[str, Any]]:
    """Every worker node (one ``qcluster`` process) with its state (``jobs.engine.nodes``)."""
    return [{**row, "state": row["status"]} for row in health.node_rows(now=now)]


def queues(*, now: datetime) -> list[dict[str, Any]]:
    """Every known queue: depth by state, oldest queued age, and its pause."""
    figures = stats.depth()
    paused = {p.queue: p for p in QueuePause.objects.all()}
    rows = []
    for name in sorted(set(pauses.known_queues()) | set(figures)):
        entry = figures.get(name) or {}
        oldest = entry.get("oldest_queued")
        pause = paused.get(name)
        rows.append(
            {
                "queue": name,
                **{state: entry.get(state, 0) for state in (*DEPTH_FIELDS, *ENDED_FIELDS)},
                "oldest_queued_age": None if oldest is None else (now - oldest).total_seconds(),
                "paused": pause is not None,
                "paused_at": pause.paused_at if pause else None,
                "paused_by": pause.paused_by if pause else "",
            }
        )
    return rows


def _with_now(series: dict[str, list[Any]], queue_rows: list[dict[str, Any]]) -> None:
    """The current bucket shows the depth now (the samples are a minute apart)."""
    for name in DEPTH_FIELDS:
        series[name][-1] = max(series[name][-1] or 0, sum(q[name] for q in queue_rows))
    oldest = max((q["oldest_queued_age"] or 0.0 for q in queue_rows), default=0.0)
    series["oldest"][-1] = max(series["oldest"][-1] or 0.0, oldest)


def overview(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    queue_rows = queues(now=now)
    charts = {
        "throughput_hour": throughput(window=LAST_HOUR, now=now),
        "throughput_week": throughput(window=LAST_WEEK, now=now),
        "depth_hour": depth_series(window=LAST_HOUR, now=now),
        "depth_week": depth_series(window=LAST_WEEK, now=now),
    }
    _with_now(charts["depth_hour"], queue_rows)
    _with_now(charts["depth_week"], queue_rows)
    return {
        "now": now,
        "charts": charts,
        "jobs": job_table(now=now),
        "nodes": worker_nodes(now=now),
        "queues": queue_rows,
        "running": running_tasks(now=now),
        "batches": recent_batches(),
        "limits": backend.limits_in_use(limit=LIMITS_SHOWN),
        "rates": backend.rates_in_use(limit=LIMITS_SHOWN),
    }


def running_tasks(*, now: datetime) -> list[dict[str, Any]]:
    """The longest-running tasks, with whether a cancel was asked (the page's Cancel)."""
    rows = backend.running(limit=RUNNING_SHOWN)
    return [
        {**row, "running_seconds": (now - row["claimed_at"]).total_seconds()}
        if row["claimed_at"] is not None
        else {**row, "running_seconds": None}
        for row in rows
    ]


def recent_batches() -> list[dict[str, Any]]:
    """Unfinished batches first, then the latest finished, with their progress."""
    unfinished = list(
        JobBatch.objects.filter(finished_at__isnull=True).order_by("-id")[:BATCHES_SHOWN]
    )
    finished = list(
        JobBatch.objects.filter(finished_at__isnull=False).order_by("-id")[
            : max(BATCHES_SHOWN - len(unfinished), 0)
        ]
    )
    return [
        {
            "id": batch.id,
            "name": str(batch),
            "state": batch.state,
            "total": batch.total,
            "ended": batch.ended,
            "succeeded": batch.succeeded,
            "not_succeeded": batch.dead + batch.cancelled + batch.expired,
            "percent": 100 * batch.ended // batch.total if batch.total else 100,
            "finished_at": batch.finished_at,
        }
        for batch in unfinished + finished
    ]
