"""The queue as the operations see it: what it holds, and the operators' changes.

The ``jobs.Job`` table is the queue (its rows change in ``transitions`` only).
/healthz, metrics and the dashboard read it here; the operators' services retry and
delete through here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from jobs.engine import transitions
from jobs.models import Job, RateStart

ALL_STATES = tuple(Job.State.values)
RUNNING_FIELDS = (
    "id", "task_id", "job_name", "func", "attempt", "claimed_at", "claimed_by",
    "progress_done", "progress_total", "progress_message", "progress_updated_at",
    "cancel_requested_at", "cancelled_by",
)  # fmt: skip


def running_counts(node_ids: Sequence[int]) -> dict[int, int]:
    """node id -> tasks it holds now."""
    counts = (
        Job.objects.filter(owner__in=node_ids, state=Job.State.RUNNING)
        .values("owner")
        .annotate(n=Count("id"))
        .values_list("owner", "n")
        .order_by()
    )
    # The owner column is nullable; the filter on it leaves no NULL.
    return {owner: n for owner, n in counts if owner is not None}


def enqueue(tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
    """Store task packages; for a unique job already active, its task id."""
    return transitions.insert_many(tasks, queue=queue)


def limits_in_use(*, limit: int = 50) -> list[dict[str, Any]]:
    """Each concurrency limit with a task running or waiting: key, job, limit, running,
    waiting (busiest first, at most ``limit``); then each queue limit of the settings."""
    rows = (
        Job.objects.filter(limit_key__isnull=False, state__in=Job.ACTIVE_STATES)
        .values("limit_key")
        .annotate(
            job=Max("job_name"),
            limit=Max("limit_max"),
            running=Count("id", filter=Q(state=Job.State.RUNNING)),
            waiting=Count("id", filter=~Q(state=Job.State.RUNNING)),
        )
        .order_by("-running", "-waiting", "limit_key")[:limit]
    )
    found = [
        {"key": r["limit_key"], "job": r["job"], "limit": r["limit"],
         "running": r["running"], "waiting": r["waiting"]}
        for r in rows
    ]  # fmt: skip
    queues = dict(settings.JOBS_QUEUE_CONCURRENCY)
    if queues:
        counts = dict(
            Job.objects.filter(state=Job.State.RUNNING, queue__in=queues)
            .values("queue")
            .annotate(n=Count("id"))
            .values_list("queue", "n")
            .order_by()
        )
        found += [
            {"key": f"queue:{queue}", "job": "", "limit": n, "running": counts.get(queue, 0),
             "waiting": None}
            for queue, n in sorted(queues.items())
        ]  # fmt: skip
    return found


def rates_in_use(*, limit: int = 50) -> list[dict[str, Any]]:
    """Each rate limit with a task waiting or running: key, job, its N starts per window
    (``rate``, ``seconds``) and the starts counted in the window now (busiest first, at
    most ``limit``). A start counts from its claim, as the claim counts it."""
    rows = list(
        Job.objects.filter(rate_key__isnull=False, state__in=Job.ACTIVE_STATES)
        .values("rate_key")
        .annotate(job=Max("job_name"), rate=Max("rate_max"), seconds=Max("rate_seconds"))
        .order_by("rate_key")[:limit]
    )
    now = timezone.now()
    found = []
    for row in rows:
        window = timedelta(seconds=float(row["seconds"] or 0))
        started = RateStart.objects.filter(key=row["rate_key"], started_at__gt=now - window)
        found.append(
            {"key": row["rate_key"], "job": row["job"], "rate": row["rate"],
             "seconds": row["seconds"], "started": started.count()}
        )  # fmt: skip
    return sorted(found, key=lambda r: (-r["started"], r["key"]))


def prune_rate_starts() -> int:
    """Forget rate-limit starts older than the longest window (the heartbeat calls it)."""
    return transitions.prune_rate_starts()


def requeue_failed(*, row_ids: Collection[int], budget: int) -> list[int]:
    """Operators retry failed tasks (inside their transaction): the ids queued again."""
    return transitions.requeue_failed(row_ids=row_ids, budget=budget)


def delete_waiting(*, row_ids: Collection[int], states: Collection[str]) -> list[int]:
    """Operators delete tasks (inside their transaction): the ids deleted, never running."""
    return transitions.delete_waiting(row_ids=row_ids, states=states)


def vacuum(*, min_dead_rows: int) -> transitions.Vacuumed | None:
    """Reclaim the queue table's dead rows when autovacuum has not (PostgreSQL)."""
    return transitions.vacuum(min_dead_rows=min_dead_rows)


CancelOutcome = transitions.CancelOutcome


def cancel(*, row_ids: Collection[int], by: str, grace: int | None) -> CancelOutcome:
    """Operators cancel tasks (inside their transaction): waiting ones end now, running
    ones are asked to stop and killed after ``grace`` seconds (None: the setting)."""
    seconds = settings.JOBS_CANCEL_GRACE_SECONDS if grace is None else grace
    return transitions.cancel(row_ids=row_ids, by=by, grace=int(seconds))


def running(*, limit: int) -> list[dict[str, Any]]:
    """Running tasks, longest first: ``RUNNING_FIELDS`` each (progress may be None)."""
    # Ordered by the index (state, created_at): the longest-running rows are
    # rarely the newest, and sorting every running row would defeat the LIMIT.
    rows = Job.objects.filter(state=Job.State.RUNNING).order_by("created_at", "id")
    return list(rows.values(*RUNNING_FIELDS)[:limit])


def depth(
    queue: str | None = None, *, states: Sequence[str] = ALL_STATES
) -> dict[str, dict[str, Any]]:
    """queue -> {state: count, "oldest_queued": datetime | None}, counting ``states``."""
    qs = Job.objects.all()
    if tuple(states) != ALL_STATES:
        qs = qs.filter(state__in=states)  # jobs_job_state_created_idx
    if queue is not None:
        qs = qs.filter(queue=queue)
    figures: dict[str, dict[str, Any]] = {}
    rows = qs.values("queue", "state").annotate(count=Count("id"), oldest=Min("created_at"))
    for row in rows.order_by():
        entry = figures.setdefault(row["queue"], empty_depth())
        entry[row["state"]] = row["count"]
        if row["state"] == Job.State.QUEUED:
            entry["oldest_queued"] = row["oldest"]
    return figures


def empty_depth() -> dict[str, Any]:
    return {state: 0 for state in Job.State.values} | {"oldest_queued": None}
