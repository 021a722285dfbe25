"""Worker health: heartbeats (written by the ``jobs.heartbeat`` job) and the /healthz report.

The report is a handful of indexed queries (no COUNT over history tables
without a time bound, no payloads read): it is safe to poll every few seconds
and it reveals no task arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Min, Q
from django.utils import timezone
from django_q.conf import Conf

from jobs.engine import backend, nodes, stats
from jobs.models import Job, JobAttempt, QueuePause, WorkerHeartbeat, WorkerNode

# At most this many running jobs are listed with their progress.
RUNNING_LIMIT = 50
# A cluster is stale when its last beat is older than this many intervals.
STALE_AFTER_INTERVALS = 3
# Nodes that stopped or died within this window are still listed.
NODES_RECENT = timedelta(hours=1)
# A node declared dead holding tasks keeps the report degraded this long.
NODE_DEATH_ALERT = timedelta(minutes=10)


class NodeFields(TypedDict):
    """The ``WorkerNode`` columns the reports read."""

    id: int
    cluster: str
    host: str
    pid: int
    started_at: datetime
    last_beat_at: datetime
    stopped_at: datetime | None
    dead_at: datetime | None
    tasks_rescued: int


class NodeRow(NodeFields):
    """A row of ``node_rows``: the columns, the node's running tasks and its status."""

    tasks_running: int
    status: str
    age_seconds: float | None


def heartbeat_interval_seconds() -> int:
    """The heartbeat period as the schedule runs it (django-q2 schedules in whole minutes)."""
    seconds = int(getattr(settings, "HEARTBEAT_INTERVAL_SECONDS", 60))
    return max(1, math.ceil(seconds / 60)) * 60


def heartbeat_record(
    *, cluster: str, host: str, pid: int | None, task_id: str | None
) -> WorkerHeartbeat:
    """Upsert the cluster's last heartbeat (one row per cluster)."""
    now = timezone.now()
    beat, created = WorkerHeartbeat.objects.get_or_create(
        cluster=cluster[:255],
        defaults={
            "host": host[:255],
            "pid": pid,
            "task_id": task_id or "",
            "last_beat_at": now,
            "started_at": now,
        },
    )
    if not created:
        beat.host, beat.pid, beat.task_id, beat.last_beat_at = host[:255], pid, task_id or "", now
        beat.save(update_fields=["host", "pid", "task_id", "last_beat_at"])
    return beat


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 1)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def cluster_status(*, age_seconds: float | None, interval_seconds: int) -> str:
    if age_seconds is None:
        return "never"
    if age_seconds > STALE_AFTER_INTERVALS * interval_seconds:
        return "stale"
    return "ok"


def known_cluster_names() -> list[str]:
    """The clusters this site is configured to run (they are expected to beat)."""
    names = {Conf.CLUSTER_NAME}
    alt = getattr(Conf, "ALT_CLUSTERS", None) or {}
    names.update(alt.keys())
    return sorted(n for n in names if n)


def clusters_report(*, now: datetime) -> list[dict[str, Any]]:
    interval = heartbeat_interval_seconds()
    beats = {
        beat["cluster"]: beat
        for beat in WorkerHeartbeat.objects.values("cluster", "host", "pid", "last_beat_at")
    }
    report = []
    for name in sorted(set(beats) | set(known_cluster_names())):
        beat = beats.get(name)
        age = _age(now, beat["last_beat_at"]) if beat else None
        report.append(
            {
                "name": name,
                "status": cluster_status(age_seconds=age, interval_seconds=interval),
                "last_heartbeat_at": _iso(beat["last_beat_at"]) if beat else None,
                "age_seconds": age,
                "host": beat["host"] if beat else None,
                "pid": beat["pid"] if beat else None,
            }
        )
    return report


def node_status(node: NodeFields, *, now: datetime) -> str:
    if node["dead_at"] is not None:
        return "dead"
    if node["stopped_at"] is not None:
        return "stopped"
    silent = (now - node["last_beat_at"]).total_seconds()
    # Two missed beats: not dead yet (peers wait JOBS_NODE_DEAD_AFTER_SECONDS), but late.
    return "stale" if silent > 2 * nodes.heartbeat_seconds() + 1 else "ok"


def node_rows(*, now: datetime) -> list[NodeRow]:
    """Every live worker node, and those that ended within the last hour, with their
    status and running tasks (datetimes as they are; ``nodes_report`` formats them)."""
    since = now - NODES_RECENT
    columns = list(
        WorkerNode.objects.filter(
            Q(last_beat_at__gte=since) | Q(stopped_at__isnull=True, dead_at__isnull=True)
        ).values(
            "id", "cluster", "host", "pid", "started_at", "last_beat_at", "stopped_at",
            "dead_at", "tasks_rescued",
        )
    )  # fmt: skip
    running = backend.running_counts([row["id"] for row in columns])
    rows: list[NodeRow] = [
        {
            **row,
            "tasks_running": running.get(row["id"], 0),
            "status": node_status(row, now=now),
            "age_seconds": _age(now, row["last_beat_at"]),
        }
        for row in columns
    ]
    return sorted(rows, key=lambda r: (r["cluster"], r["started_at"], r["id"]))


def nodes_report(*, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "id": row["id"],
            "cluster": row["cluster"],
            "host": row["host"],
            "pid": row["pid"],
            "status": row["status"],
            "started_at": _iso(row["started_at"]),
            "last_beat_at": _iso(row["last_beat_at"]),
            "age_seconds": row["age_seconds"],
            "stopped_at": _iso(row["stopped_at"]),
            "dead_at": _iso(row["dead_at"]),
            "tasks_running": row["tasks_running"],
            "tasks_handed_out_at_death": row["tasks_rescued"],
        }
        for row in node_rows(now=now)
    ]


def nodes_degraded(report: list[dict[str, Any]], *, now: datetime) -> bool:
    """A node is silent now with tasks in hand, or died holding tasks recently."""
    for node in report:
        if node["status"] == "stale" and node["tasks_running"]:
            return True
        if (
            node["status"] == "dead"
            and node["tasks_handed_out_at_death"]
            and now - datetime.fromisoformat(node["dead_at"]) < NODE_DEATH_ALERT
        ):
            return True
    return False


def queue_report(*, now: datetime) -> dict[str, Any]:
    queues = stats.depth(states=(Job.State.QUEUED, Job.State.RETRYING)).values()
    oldest = [q["oldest_queued"] for q in queues if q["oldest_queued"] is not None]
    return {
        "queued": sum(q[Job.State.QUEUED] for q in queues),
        "oldest_queued_age_seconds": _age(now, min(oldest)) if oldest else None,
        "retrying": sum(q[Job.State.RETRYING] for q in queues),
    }


def last_hour_report(*, now: datetime) -> dict[str, Any]:
    since = now - timedelta(hours=1)
    # Runs counted by the workers (jobs.engine.stats, minute rows), and failed
    # attempts from the history (indexed on finished_at): the latter also holds
    # attempts whose worker died, which no monitor saw.
    runs = stats.totals_since(since)
    failed = JobAttempt.objects.filter(finished_at__gte=since, succeeded=False).count()
    return {
        "finished": runs["succeeded"] + runs["failed"],
        "succeeded": runs["succeeded"],
        "failed": failed,
    }


ENDED_STATES = (Job.State.DEAD, Job.State.CANCELLED, Job.State.EXPIRED)


def ended_reports(*, now: datetime) -> dict[str, Any]:
    """``dead``, ``cancelled`` and ``expired``: count and oldest age each, one query."""
    rows = (
        Job.objects.filter(state__in=ENDED_STATES, last_failed_at__isnull=False)
        .values("state")
        .annotate(count=Count("id"), oldest=Min("last_failed_at"))
        .order_by()
    )
    found = {row["state"]: row for row in rows}
    return {
        str(state): {
            "count": found[state]["count"] if state in found else 0,
            "oldest_age_seconds": _age(now, found[state]["oldest"]) if state in found else None,
        }
        for state in ENDED_STATES
    }


def running_report(*, now: datetime) -> list[dict[str, Any]]:
    rows = backend.running(limit=RUNNING_LIMIT)
    return [
        {
            "task_id": row["task_id"],
            "job": row["job_name"] or row["func"],
            "attempt": row["attempt"],
            "running_seconds": _age(now, row["claimed_at"]),
            "worker": row["claimed_by"],
            "progress": None
            if row["progress_done"] is None
            else {
                "done": row["progress_done"],
                "total": row["progress_total"],
                "message": row["progress_message"],
                "updated_at": _iso(row["progress_updated_at"]),
            },
        }
        for row in rows
    ]


def paused_report(*, now: datetime) -> list[dict[str, Any]]:
    """Queues an operator paused (jobs.pauses): their tasks wait, on purpose."""
    return [
        {
            "queue": pause.queue,
            "paused_at": _iso(pause.paused_at),
            "paused_seconds": _age(now, pause.paused_at),
            "paused_by": pause.paused_by or None,
        }
        for pause in QueuePause.objects.order_by("queue")
    ]


def limits_report(*, now: datetime) -> list[dict[str, Any]]:
    """Flow control: each concurrency limit in use (running against the limit, waiting)
    and each queue limit of the settings. Keys, not arguments: a per-key limit names its
    key as the job's declaration computes it."""
    return backend.limits_in_use()


@dataclass(frozen=True)
class HealthReport:
    ok: bool  # the database answers: HTTP 200, else 503
    body: dict[str, Any]


def health_report() -> HealthReport:
    now = timezone.now()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # The error class only: a message can carry the host or user name.
        return HealthReport(
            ok=False,
            body={
                "status": "error",
                "checked_at": now.isoformat(),
                "database": {"status": "error", "error": type(exc).__name__},
            },
        )
    # The database answers: 200 from here on. A section whose query fails (tables
    # not migrated yet, a lock timeout) reports its error class instead of figures.
    sections: dict[str, Any] = {}
    failed = False
    for name, build in (
        ("clusters", clusters_report),
        ("nodes", nodes_report),
        ("queue", queue_report),
        ("last_hour", last_hour_report),
        ("", ended_reports),  # dead, cancelled, expired
        ("running", running_report),
        ("paused_queues", paused_report),
        ("limits", limits_report),
    ):
        built: Any
        try:
            built = build(now=now)
        except DatabaseError as exc:
            failed = True
            built = {"error": type(exc).__name__}
            if not name:
                built = {str(state): built for state in ENDED_STATES}
        if name:
            sections[name] = built
        else:
            sections.update(built)
    clusters = sections["clusters"]
    healthy = (
        not failed
        and all(c["status"] == "ok" for c in clusters)
        and isinstance(sections["nodes"], list)
        and not nodes_degraded(sections["nodes"], now=now)
    )
    body = {
        "status": "ok" if healthy else "degraded",
        "checked_at": now.isoformat(),
        "database": {"status": "ok"},
        **sections,
    }
    return HealthReport(ok=True, body=body)
