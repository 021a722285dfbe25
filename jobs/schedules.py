"""Periodic jobs, declared in code and synced into django-q2 ``Schedule`` rows.

The declarations below are the source of truth. ``sync_schedules()`` makes the
``Schedule`` table match them and is idempotent: it runs after every
``migrate`` (post_migrate) and from ``manage.py sync_schedules``.

* A declared schedule gets one row, named as declared (operators find it in the
  admin under Scheduled tasks). A row with that name made by hand is adopted.
* Rows the sync manages carry a marker: their ``hook`` is ``MANAGED_HOOK`` (a
  no-op). A marked row whose declaration was removed is deleted; rows without
  the marker are the operators' own and never touched.
* A managed row whose fields differ from its declaration was edited by someone:
  the edit is reported (log warning, command output) and the declaration is
  restored. Change the declaration to change a schedule.
* A declaration whose job is not registered (its app is not installed yet) is
  skipped and reported; it is created by the next sync after the job exists.

django-q2 takes due rows with ``select_for_update`` in one transaction, so two
clusters on PostgreSQL fire each tick once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.conf import croniter
from django_q.models import Schedule

from jobs import registry
from jobs.health import heartbeat_interval_seconds

logger = structlog.stdlib.get_logger("jobs.schedules")

MANAGED_HOOK = "jobs.schedules.managed"


def managed(task: Any) -> None:
    """The marker hook of code-managed schedules: deliberately does nothing."""


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    job: str
    minutes: int | None = None  # every N minutes, or
    cron: str | None = None  # a cron expression
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    cluster: str | None = None

    def __post_init__(self) -> None:
        if (self.minutes is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of minutes or cron")


def declared() -> list[ScheduleSpec]:
    """Every schedule the code declares."""
    return [
        ScheduleSpec(
            name="heartbeat", job="jobs.heartbeat", minutes=heartbeat_interval_seconds() // 60
        ),
        ScheduleSpec(name="orphan_cleanup", job="files.orphan_cleanup", minutes=60),
        # Daily at a quiet hour (UTC), not 24 h after whenever the last run happened.
        ScheduleSpec(name="prune_history", job="jobs.prune_history", cron="30 3 * * *"),
    ]


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # name -> {field: [stored value, declared value]}
    edited: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "edited": self.edited,
            "skipped": self.skipped,
        }


def _row_values(spec: ScheduleSpec, job: registry.JobSpec) -> dict[str, Any]:
    return {
        "func": job.path,
        "hook": MANAGED_HOOK,
        # Stored as text and read back with ast.literal_eval by the scheduler.
        "args": repr(tuple(spec.args)) if spec.args else None,
        "kwargs": repr(dict(spec.kwargs)) if spec.kwargs else None,
        "schedule_type": Schedule.CRON if spec.cron else Schedule.MINUTES,
        "minutes": spec.minutes,
        "cron": spec.cron,
        "repeats": -1,
        "cluster": spec.cluster or job.cluster,
    }


def _first_run(spec: ScheduleSpec) -> datetime:
    """An interval schedule runs at once; a cron schedule at its next matching time."""
    now = timezone.now()
    if spec.cron:
        return croniter(spec.cron, now).get_next(datetime)
    return now


def _differences(row: Schedule, values: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        name: [getattr(row, name), value]
        for name, value in values.items()
        if (getattr(row, name) or None) != (value or None)
    }


def sync_schedules(*, declarations: list[ScheduleSpec] | None = None) -> SyncReport:
    """Make the Schedule rows match the declarations; returns what changed."""
    declarations = declared() if declarations is None else declarations
    report = SyncReport()
    with transaction.atomic():
        rows: dict[str, list[Schedule]] = {}
        names = [spec.name for spec in declarations]
        candidates = Schedule.objects.select_for_update().filter(
            Q(name__in=names) | Q(hook=MANAGED_HOOK)
        )
        for row in candidates.order_by("id"):
            rows.setdefault(row.name or "", []).append(row)
        for spec in declarations:
            try:
                job = registry.get(spec.job)
            except registry.UnknownJob:
                report.skipped[spec.name] = f"job {spec.job!r} is not registered"
                continue
            if spec.cron and not croniter:
                report.skipped[spec.name] = "cron schedules need the croniter package"
                continue
            values = _row_values(spec, job)
            existing = rows.pop(spec.name, [])
            # Duplicates by name (made by hand, or by an old bug): keep the first.
            for extra in existing[1:]:
                extra.delete()
                report.deleted.append(spec.name)
            if not existing:
                Schedule.objects.create(name=spec.name, next_run=_first_run(spec), **values)
                report.created.append(spec.name)
                continue
            row = existing[0]
            diff = _differences(row, values)
            if not diff:
                report.unchanged.append(spec.name)
                continue
            if row.hook == MANAGED_HOOK:
                report.edited[spec.name] = diff
            for name, value in values.items():
                setattr(row, name, value)
            if {"schedule_type", "minutes", "cron"} & diff.keys():
                # A new period starts now, not at the old period's next run.
                row.next_run = _first_run(spec)
            row.save()
            report.updated.append(spec.name)
        # What is left is marked as ours but no longer declared.
        for name, leftovers in rows.items():
            for row in leftovers:
                if row.hook == MANAGED_HOOK:
                    row.delete()
                    report.deleted.append(name)
    for name, diff in report.edited.items():
        logger.warning(
            "managed schedule was edited; restored from code",
            schedule=name,
            changes={k: [str(v[0]), str(v[1])] for k, v in diff.items()},
        )
    if report.created or report.updated or report.deleted or report.skipped:
        logger.info("schedules synced", **report.as_dict())
    return report


def on_post_migrate(sender: Any = None, **kwargs: Any) -> None:
    """Sync after the jobs app migrated (once per ``migrate``), if django_q's tables exist."""
    if getattr(sender, "name", None) != "jobs":
        return
    using = kwargs.get("using", "default")
    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return
    sync_schedules()


def connect_signals() -> None:
    from django.db.models.signals import post_migrate

    post_migrate.connect(on_post_migrate, dispatch_uid="jobs.schedules.post_migrate")
