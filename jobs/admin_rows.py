"""Building blocks of the admin pages over ``jobs.Job`` rows, made for a table of millions.

No ``SELECT DISTINCT`` (every filter has fixed or cheaply bounded choices), no
full ``COUNT(*)`` (the paginator counts up to a cap), heavy columns deferred.
"Failed tasks" (jobs.failures.admin) and "Queued tasks" (jobs.queued.admin) share
the paginator, the row columns and the payload decoding.
"""

from __future__ import annotations

import pprint
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django_q.signing import SignedPackage

from jobs.engine import registry
from jobs.models import Job

COUNT_CAP = 10_000
# A substring search matching a few percent of a million rows is slow to count
# far (a scan until the cap): the first 500 matches are enough to say "more than".
SEARCH_COUNT_CAP = 500
RECENT_FOR_TYPES = 1_000


class CappedPaginator(Paginator[Job]):
    """Counts at most ``COUNT_CAP + 1`` rows: "more than 10,000" is all a page needs."""

    object_list: QuerySet[Job]  # the admin pages it; Paginator takes any sequence

    def __init__(self, *args: Any, cap: int = COUNT_CAP, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cap = cap

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


def admin_user(request: HttpRequest) -> AbstractBaseUser:
    """Who acts on an admin page (for the audit log): the admin site lets only active
    staff in, so never AnonymousUser."""
    user = request.user
    if not isinstance(user, AbstractBaseUser):
        raise PermissionDenied
    return user


def job_id(object_id: str) -> int:
    """The ``Job`` id in an admin URL; anything but a bigint is a 404, not a ValueError."""
    value = unquote(object_id)
    if not (value.isascii() and value.isdigit()) or int(value) > 2**63 - 1:
        raise Http404("No such task.")
    return int(value)


def decode_payload(payload: str) -> dict[str, Any]:
    """Arguments pretty-printed, or why the payload cannot be read."""
    try:
        task = SignedPackage.loads(payload)
    except Exception as exc:
        return {"error": f"Unreadable payload ({type(exc).__name__}: {exc})"}
    return {
        "args": pprint.pformat(tuple(task.get("args") or ()), width=100),
        "kwargs": pprint.pformat(dict(task.get("kwargs") or {}), width=100),
    }


def task_url(task_id: str) -> str:
    """The task page (jobs.taskpage.admin) of a task id: every list links to it."""
    return reverse("admin:jobs_task_change", args=[task_id])


def absolute_task_url(task_id: str) -> str:
    """The task page's address for use outside a request (``SITE_URL``)."""
    return f"{settings.SITE_URL}{task_url(task_id)}"


class JobRowsMixin:
    """Columns and row markup shared by the admin pages over ``Job`` rows."""

    @admin.display(description="attempts")
    def attempts(self, obj: Job) -> str:
        return f"{obj.attempt} of {obj.max_attempts}"

    @admin.display(description="progress")
    def progress(self, obj: Job) -> str:
        if obj.progress_done is None:
            return "—"
        total = f"/{obj.progress_total}" if obj.progress_total else ""
        return f"{obj.progress_done}{total} {obj.progress_message}".strip()

    @admin.display(description="task page")
    def task_page(self, obj: Job) -> str:
        return format_html(
            '<a href="{}" title="{}">{}…</a>', task_url(obj.task_id), obj.task_id, obj.task_id[:8]
        )


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("retrying", "retrying"),
            ("dead", "dead"),
            ("cancelled", "cancelled"),
            ("expired", "expired (not started in time)"),
            ("queued", "queued again (retried)"),
            ("running", "running"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(state=self.value()) if self.value() else queryset


class FunctionFilter(admin.SimpleListFilter):
    """The registered jobs: a fixed list, never read from the table."""

    title = "job"
    parameter_name = "func"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(spec.path, spec.name) for spec in registry.all_jobs()]
        selected = self.value()
        if selected and selected not in {path for path, _ in choices}:
            choices.append((selected, selected))  # an unregistered function from a link
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(func=self.value()) if self.value() else queryset


class ErrorTypeFilter(admin.SimpleListFilter):
    """Error types of the latest failures (bounded read on the failure index)."""

    title = "error type"
    parameter_name = "error_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = (
            Job.objects.filter(last_failed_at__isnull=False)
            .order_by("-last_failed_at")
            .values_list("last_error_type", flat=True)[:RECENT_FOR_TYPES]
        )
        types = set(recent)
        if selected := self.value():
            types.add(selected)
        return [(t, t.rsplit(".", 1)[-1] or "(none)") for t in sorted(types)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(last_error_type=self.value()) if self.value() else queryset


class FailedWithinFilter(admin.SimpleListFilter):
    title = "last failure"
    parameter_name = "failed"
    RANGES = {
        "1h": ("in the last hour", timedelta(hours=1)),
        "24h": ("in the last 24 hours", timedelta(hours=24)),
        "7d": ("in the last 7 days", timedelta(days=7)),
        "30d": ("in the last 30 days", timedelta(days=30)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.RANGES.items()] + [
            ("older", "more than 30 days ago"),
            ("any", "any time"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        now = timezone.now()
        if value in self.RANGES:
            return queryset.filter(last_failed_at__gte=now - self.RANGES[value][1])
        if value == "older":
            return queryset.filter(last_failed_at__lt=now - timedelta(days=30))
        return queryset


class SignatureFilter(admin.SimpleListFilter):
    """Set by the grouping page's links; shown only while active."""

    title = "error group"
    parameter_name = "signature"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        selected = self.value()
        return [(selected, selected)] if selected else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(error_signature=self.value()) if self.value() else queryset


class BatchFilter(admin.SimpleListFilter):
    """A batch's members (set by the Batches page's links); shown only while active."""

    title = "batch"
    parameter_name = "batch"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        selected = self.value()
        return [(selected, f"batch {selected}")] if selected else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if not value:
            return queryset
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            return queryset.none()
        return queryset.filter(batch=int(value))


LIST_FILTERS = (
    StateFilter,
    FunctionFilter,
    ErrorTypeFilter,
    FailedWithinFilter,
    SignatureFilter,
    BatchFilter,
)
