"""The task search: the admin's Tasks page, the Overview's search box and the benchmark.

Every filter is one indexed condition on the queue table (``jobs.models`` names the
indexes), results newest first (``created_at``): a filter on the job, the queue or
the state walks its ``(column, created_at)`` index, a time range the ``created_at``
one; argument and error text use ``ILIKE``, served by trigram indexes on
PostgreSQL (migrations 0003 and 0012) for terms of three characters or more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from jobs.failures import lookups  # noqa: F401 (registers __like_contains)
from jobs.failures.selectors import HEAVY_FIELDS
from jobs.models import Job, JobAttempt, WorkerNode

STATES = tuple(Job.State.values)
NODE_TASKS_LISTED = 5000  # task ids a node filter passes as a list
_ROW_ID = re.compile(r"^[0-9]{1,18}$")  # within a bigint


@dataclass(frozen=True)
class TaskFilters:
    """What to find; an empty field does not filter."""

    text: str = ""  # a task id (or the row's number), or text of the arguments or last error
    func: str = ""  # the job's dotted function path
    queue: str = ""
    state: str = ""
    node: int | None = None  # a WorkerNode id: tasks it holds or ran an attempt of
    created_from: datetime | None = None
    created_until: datetime | None = None
    arguments: str = ""  # a substring of the argument text (name=value ...)
    error: str = ""  # a substring of the last error message


def _arguments(term: str) -> Q:
    # The trigram index leaves running rows out (migration 0012: a claim's update adds
    # nothing to it); the few running tasks are read through the state index.
    running = Q(state=Job.State.RUNNING)
    return (~running & Q(search_text__like_contains=term)) | (
        running & Q(search_text__like_contains=term)
    )


def _text(term: str) -> Q:
    match = Q(task_id=term) | _arguments(term) | _error(term)
    if _ROW_ID.fullmatch(term):
        match |= Q(id=int(term))
    return match


def _error(term: str) -> Q:
    # The condition of the partial trigram index on the error message (migration 0003).
    return Q(last_failed_at__isnull=False, last_error_message__like_contains=term)


def _on_node(node_id: int) -> Q:
    """Tasks the node holds now, or whose attempts one of its processes ran.

    A node that ran few attempts gives their task ids as a list (probes of the task id
    index); a busy one a condition checked per row, which finds a page of its tasks
    among the newest without reading all of its attempts first.
    """
    node = WorkerNode.objects.filter(id=node_id).first()
    if node is None:
        return Q(pk__in=[])
    held = Q(state=Job.State.RUNNING, owner=node.id)  # jobs_job_running_owner_idx
    attempts = JobAttempt.objects.filter(
        host=node.host, pid=node.pid, finished_at__gte=node.started_at
    )
    few = set(attempts.values_list("task_id", flat=True)[: NODE_TASKS_LISTED + 1])
    if len(few) <= NODE_TASKS_LISTED:
        return held | Q(task_id__in=few)
    return held | Q(Exists(attempts.filter(task_id=OuterRef("task_id"))))


def narrow(queryset: QuerySet[Job], filters: TaskFilters) -> QuerySet[Job]:
    """``queryset`` with every non-empty filter applied (the admin's filters call this)."""
    if text := filters.text.strip():
        queryset = queryset.filter(_text(text))
    if filters.func:
        queryset = queryset.filter(func=filters.func)
    if filters.queue:
        queryset = queryset.filter(queue=filters.queue)
    if filters.state:
        queryset = queryset.filter(state=filters.state)
    if filters.node is not None:
        queryset = queryset.filter(_on_node(filters.node))
    if filters.created_from is not None:
        queryset = queryset.filter(created_at__gte=filters.created_from)
    if filters.created_until is not None:
        queryset = queryset.filter(created_at__lt=filters.created_until)
    if arguments := filters.arguments.strip():
        queryset = queryset.filter(_arguments(arguments))
    if error := filters.error.strip():
        queryset = queryset.filter(_error(error))
    return queryset


def ordered(queryset: QuerySet[Job]) -> QuerySet[Job]:
    """Newest first, the payload left in the database: how every task list reads."""
    return queryset.defer(*HEAVY_FIELDS).order_by("-created_at", "-id")


def search_tasks(*, filters: TaskFilters) -> QuerySet[Job]:
    """Tasks with a queue row (queued, running, retrying, dead) matching ``filters``."""
    return ordered(narrow(Job.objects.all(), filters))
