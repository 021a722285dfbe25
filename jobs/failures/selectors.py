"""Reads over failed tasks: the admin page, the commands and the services share them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import TypedDict

from django.db import connections, transaction
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from jobs.failures import lookups  # noqa: F401 (registers __like_contains)
from jobs.models import Job, JobAttempt

FAILED_STATES = Job.FAILED_STATES
# Columns the lists never show: the signed payload can be large.
HEAVY_FIELDS = ("payload",)


def failed_jobs(
    *,
    state: str | None = None,
    func: str | None = None,
    error: str | None = None,
    error_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[Job]:
    """Tasks with at least one failure, newest failure first.

    ``last_failed_at IS NOT NULL`` matches the partial indexes in jobs.models,
    so each filter walks an index in the order the list shows.
    """
    qs = Job.objects.filter(last_failed_at__isnull=False)
    if state:
        qs = qs.filter(state=state)
    if func:
        qs = qs.filter(func=func)
    if error_type:
        qs = qs.filter(last_error_type=error_type)
    if since is not None:
        qs = qs.filter(last_failed_at__gte=since)
    if error:
        qs = qs.filter(last_error_message__like_contains=error)
    return qs.defer(*HEAVY_FIELDS).order_by("-last_failed_at", "-id")


def task_attempts(*, task_id: str) -> QuerySet[JobAttempt]:
    """Every recorded attempt of one task, in order."""
    return JobAttempt.objects.filter(task_id=task_id).order_by("attempt", "id")


def search_failed(queryset: QuerySet[Job], term: str) -> QuerySet[Job]:
    """The admin search: the whole term in the error message, name or function, or a task id.

    The whole term, not Django's per-word AND of ORs over ``UPPER(...)``: with
    plain ``ILIKE`` the planner has column statistics and, on PostgreSQL, the
    trigram indexes of migration 0003 (a BitmapOr for rare terms).
    """
    term = term.strip()
    if not term:
        return queryset
    return queryset.filter(
        Q(last_error_message__like_contains=term)
        | Q(name__like_contains=term)
        | Q(func__like_contains=term)
        | Q(task_id=term)
    )


class ErrorGroup(TypedDict):
    """A row of ``failed_groups``."""

    error_signature: str
    count: int
    last_failed_at: datetime | None


@contextlib.contextmanager
def _without_jit(alias: str) -> Iterator[None]:
    """PostgreSQL's JIT off for the block (its own transaction); a no-op elsewhere."""
    if connections[alias].vendor != "postgresql":
        yield
        return
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        yield


def failed_groups(queryset: QuerySet[Job], *, limit: int) -> list[ErrorGroup]:
    """Failed tasks grouped by error signature, biggest group first.

    Each group: ``error_signature``, ``count`` and ``last_failed_at``, in one
    query. The counts are a ``count(*)`` that PostgreSQL answers with an
    index-only scan of ``jobs_job_failed_sig_idx`` (a ``max()`` would read every
    row); each group's latest failure is a subquery run once per group, one
    probe of the same index in (signature, newest failure) order. JIT is off:
    compiling this query costs more than it saves (docs/failures.md).
    """
    base = queryset.order_by()
    latest = (
        base.filter(error_signature=OuterRef("error_signature"))
        .order_by("-last_failed_at")
        .values("last_failed_at")[:1]
    )
    with _without_jit(base.db):
        return list(
            base.values("error_signature")
            .annotate(count=Count("*"))
            .annotate(last_failed_at=Subquery(latest))
            .order_by("-count", "error_signature")[:limit]
        )
