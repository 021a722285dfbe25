"""From a django-q2 task package to a ``Job`` row, and into the table.

``job_row_from_task`` is the one mapping every writer uses. ``insert_row`` is the
broker's single statement (``async_task``), ``insert_rows`` the registry's batch.
"""

# SQL text here is built only from model metadata (table and column names), never
# from input; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.signing import SignedPackage

from jobs.arguments import search_text
from jobs.engine import specs
from jobs.engine.channels import channel_name, notify
from jobs.engine.execute import clean
from jobs.engine.funcs import func_path
from jobs.models import Job

_TABLE = Job._meta.db_table
_INSERT_FIELDS = [f for f in Job._meta.concrete_fields if not f.primary_key]
_INSERT_COLUMNS = ", ".join(str(f.column) for f in _INSERT_FIELDS)  # concrete: never None
_INSERT_PLACEHOLDERS = ", ".join(["%s"] * len(_INSERT_FIELDS))


def job_row_from_task(task: dict[str, Any], *, queue: str, payload: str) -> Job:
    """An unsaved ``Job`` for the task package ``task`` signed as ``payload``."""
    func = func_path(task["func"])
    spec = specs.for_func(func)
    unique_key = None
    if spec is not None and spec.unique is not None:
        unique_key = spec.unique(*task.get("args", ()), **task.get("kwargs", {}))
    timeout = task.get("timeout")
    if timeout is None and spec is not None:
        timeout = spec.timeout
    max_attempts = (
        spec.max_attempts if spec is not None and spec.max_attempts is not None else None
    ) or settings.JOBS_DEFAULT_MAX_ATTEMPTS
    now = timezone.now()
    return Job(
        task_id=task["id"],
        queue=queue,
        name=clean(str(task.get("name") or ""))[:139],
        func=clean(func)[:256],
        job_name=spec.name if spec is not None else "",
        priority=spec.priority if spec is not None else 0,
        payload=payload,
        state=Job.State.QUEUED,
        run_at=now,
        attempt=0,
        max_attempts=max_attempts,
        timeout=timeout if isinstance(timeout, int) and timeout > 0 else None,
        unique_key=unique_key,
        created_at=now,
        search_text=search_text(task),
    )


def insert_row(job: Job, *, alias: str) -> int | None:
    """Insert ``job`` in one statement; its id, or None for a duplicate active unique key.

    It runs on the caller's connection and transaction. On PostgreSQL the same
    statement sends the queue's NOTIFY, only if a row was inserted and only at commit.
    """
    db = connections[alias]
    postgresql = db.vendor == "postgresql"
    if postgresql:
        # Every Job column is a str, int, aware datetime or None, which psycopg
        # adapts as is: the fields' get_db_prep_save would be a cost on every enqueue.
        values = [getattr(job, f.attname) for f in _INSERT_FIELDS]
    else:
        values = [f.get_db_prep_save(getattr(job, f.attname), db) for f in _INSERT_FIELDS]
    insert = (
        f"INSERT INTO {_TABLE} ({_INSERT_COLUMNS}) VALUES ({_INSERT_PLACEHOLDERS}) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    with db.cursor() as cursor:
        if postgresql:
            cursor.execute(
                f"WITH ins AS ({insert}) SELECT id, pg_notify(%s, '') FROM ins",
                [*values, channel_name(job.queue)],
            )
        else:
            cursor.execute(insert, values)
        row = cursor.fetchone()
    return row[0] if row else None


def insert_rows(tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
    """Insert ``Job`` rows in one statement; a duplicate of an active unique key is skipped."""
    alias = Conf.ORM if isinstance(Conf.ORM, str) else "default"
    if len(tasks) == 1:
        # One task: the broker's single statement (INSERT ... ON CONFLICT DO
        # NOTHING with its NOTIFY), one round trip like async_task(), instead of
        # a transaction around an INSERT and a separate NOTIFY.
        [task] = tasks
        payload = SignedPackage.dumps(task)
        row = job_row_from_task(task, queue=queue, payload=payload)
        if insert_row(row, alias=alias) is not None:
            return [task["id"]]
        # Skipped: a task with the same unique key is queued or running.
        active = _active_task_ids(alias, {row.unique_key})
        return [active.get(row.unique_key, row.task_id)]

    rows = [
        job_row_from_task(task, queue=queue, payload=SignedPackage.dumps(task)) for task in tasks
    ]
    with transaction.atomic(using=alias):
        # ON CONFLICT DO NOTHING (INSERT OR IGNORE on SQLite): a duplicate unique
        # key is skipped without aborting the caller's transaction.
        Job.objects.using(alias).bulk_create(rows, ignore_conflicts=True)
        keys = {row.unique_key for row in rows if row.unique_key is not None}
        active = _active_task_ids(alias, keys) if keys else {}
        notify(alias, [queue])
    return [
        active.get(row.unique_key, row.task_id) if row.unique_key else row.task_id for row in rows
    ]


def _active_task_ids(alias: str, keys: Collection[str | None]) -> dict[str | None, str]:
    """unique key -> task id of the queued or running task holding it."""
    return dict(
        Job.objects.using(alias)
        .filter(unique_key__in=keys, state__in=Job.ACTIVE_STATES)
        .values_list("unique_key", "task_id")
    )
