"""Periodic jobs, declared in code and synced into django-q2 ``Schedule`` rows.

A job declares its schedule (``@job(..., schedule=Every("name", minutes=60))``) in
the app that owns it; those declarations are the source of truth. ``sync_schedules()`` makes the
``Schedule`` table match them and is idempotent: it runs after every
``migrate`` (post_migrate) and from ``manage.py sync_schedules``.

* A declared schedule gets one row, named as declared (operators find it in the
  admin under Scheduled tasks). A row with that name made by hand is adopted.
* Rows the sync manages carry a marker: their ``hook`` is ``MANAGED_HOOK`` (a
  no-op). A marked row whose declaration was removed is deleted; rows without
  the marker are the operators' own and never touched.
* The sync records what it wrote to each managed row (``SyncedSchedule``). A
  managed row that differs from its declaration but still holds what the sync
  last wrote follows a change of the declaration in code: it is updated and
  reported as ``updated`` (log info). A managed row that differs from what the
  sync last wrote (or with nothing recorded yet) was edited by someone: the edit
  is reported (log warning, command output) and the declaration is restored.
  Change the declaration to change a schedule.
* A declaration whose job is not registered (its app is not installed yet) is
  skipped and reported; it is created by the next sync after the job exists.

django-q2 takes due rows with ``select_for_update`` in one transaction, so two
clusters on PostgreSQL fire each tick once.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from django.contrib.admin.models import CHANGE
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.conf import croniter
from django_q.models import Schedule
from django_q.tasks import async_task

from jobs import audit
from jobs.engine import registry
from jobs.models import SyncedSchedule

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
    """Every schedule the code declares: each job's own ``schedule=Every(...)``."""
    return [
        ScheduleSpec(
            name=spec.schedule.name,
            job=spec.name,
            minutes=spec.schedule.every_minutes(),
            cron=spec.schedule.cron,
        )
        for spec in registry.all_jobs()
        if spec.schedule is not None
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
    # Only str, int and None: stored as is in SyncedSchedule.values (JSON).
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
        first: datetime = croniter(spec.cron, now).get_next(datetime)
        return first
    return now


def _differences(row: Schedule, values: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        name: [getattr(row, name), value]
        for name, value in values.items()
        if (getattr(row, name) or None) != (value or None)
    }


def _printable(diff: dict[str, list[Any]]) -> dict[str, list[str]]:
    return {name: [str(old), str(new)] for name, (old, new) in diff.items()}


def _record(name: str, values: dict[str, Any], synced: dict[str, Any]) -> None:
    """Remember what the sync wrote to the row ``name`` (no write if already so)."""
    if synced.get(name) == values:
        return
    SyncedSchedule.objects.update_or_create(
        name=name, defaults={"values": values, "synced_at": timezone.now()}
    )
    synced[name] = values


def sync_schedules(*, declarations: list[ScheduleSpec] | None = None) -> SyncReport:
    """Make the Schedule rows match the declarations; returns what changed."""
    declarations = declared() if declarations is None else declarations
    report = SyncReport()
    changed: dict[str, dict[str, list[Any]]] = {}  # declarations changed in code
    with transaction.atomic():
        synced = dict(SyncedSchedule.objects.values_list("name", "values"))
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
                _record(spec.name, values, synced)
                report.created.append(spec.name)
                continue
            row = existing[0]
            diff = _differences(row, values)
            if not diff:
                # Also records rows synced before the sync kept records.
                _record(spec.name, values, synced)
                report.unchanged.append(spec.name)
                continue
            if row.hook == MANAGED_HOOK:
                last = synced.get(spec.name)
                if last is not None and not _differences(row, last):
                    changed[spec.name] = diff
                else:
                    report.edited[spec.name] = diff
            for name, value in values.items():
                setattr(row, name, value)
            if {"schedule_type", "minutes", "cron"} & diff.keys():
                # A new period starts now, not at the old period's next run.
                row.next_run = _first_run(spec)
            row.save()
            _record(spec.name, values, synced)
            report.updated.append(spec.name)
        # What is left is marked as ours but no longer declared.
        for name, leftovers in rows.items():
            for row in leftovers:
                if row.hook == MANAGED_HOOK:
                    row.delete()
                    report.deleted.append(name)
        # Only names synced just now keep a record (a deleted or skipped one is gone).
        kept = {*report.created, *report.updated, *report.unchanged}
        stale = [name for name in synced if name not in kept]
        if stale:
            SyncedSchedule.objects.filter(name__in=stale).delete()
    for name, diff in changed.items():
        logger.info("schedule declaration changed", schedule=name, changes=_printable(diff))
    for name, diff in report.edited.items():
        logger.warning(
            "managed schedule was edited; restored from code",
            schedule=name,
            changes=_printable(diff),
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


# -- operators' actions on schedules (the admin's Run now) ------------------------
def schedule_arguments(schedule: Schedule) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The schedule's args/kwargs, parsed the way django_q.scheduler does."""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if schedule.kwargs:
        try:
            kwargs = dict(ast.literal_eval(schedule.kwargs))
        except (SyntaxError, ValueError, TypeError):
            call = ast.parse(f"f({schedule.kwargs})").body[0].value  # type: ignore[attr-defined]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    if schedule.args:
        parsed = ast.literal_eval(schedule.args)
        args = parsed if isinstance(parsed, tuple) else (parsed,)
    return args, kwargs


def schedule_run_now(*, schedule: Schedule, user: AbstractBaseUser | None = None) -> str:
    """Enqueue one run of ``schedule`` now (its next planned run is unchanged)."""
    args, kwargs = schedule_arguments(schedule)
    q_options = dict(kwargs.pop("q_options", {}) or {})
    if schedule.hook:
        q_options["hook"] = schedule.hook
    q_options.setdefault("group", schedule.name or str(schedule.id))
    task_id: str = async_task(schedule.func, *args, q_options=q_options, **kwargs)
    audit.log_actions(
        user=user,
        model=Schedule,
        objects=[(str(schedule.pk), str(schedule))],
        flag=CHANGE,
        message=f"Run now: enqueued task {task_id}.",
    )
    return task_id
