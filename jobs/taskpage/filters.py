"""The Tasks page's filters: fixed choices (never read from the table) and text boxes.

Each narrows through ``jobs.taskpage.selectors.narrow``, the search the Overview's
box and the benchmark use too. A value that cannot be used (a date that is not
one, text with a control character) is reported above the list and ignored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from jobs import health
from jobs.admin_rows import FunctionFilter
from jobs.engine import registry
from jobs.models import Job, WorkerNode
from jobs.taskpage.selectors import STATES, TaskFilters, narrow

TEXT_MAX = 1000  # characters of a text filter
NODES_SHOWN = 50
NODES_RECENT = timedelta(hours=24)


def check_text(label: str, value: str) -> str:
    """``value`` if the database can take it as a search term; ValueError saying why not."""
    if len(value) > TEXT_MAX:
        raise ValueError(f"The {label} is too long (at most {TEXT_MAX} characters): ignored.")
    if any(ord(char) < 32 and char != "\t" for char in value):
        raise ValueError(f"The {label} contains a control character: ignored.")
    return value


def parse_moment(value: str) -> datetime:
    """``2026-12-01`` or ``2026-12-01T10:30`` (or with seconds), in the site's time zone."""
    text = value.strip()
    moment = parse_datetime(text.replace(" ", "T"))
    if moment is None and (day := parse_date(text)) is not None:
        moment = datetime(day.year, day.month, day.day)
    if moment is None:
        raise ValueError(f"“{value[:40]}” is not a date: use 2026-12-01 or 2026-12-01T10:30.")
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class TaskFilterMixin(ABC):
    """A filter whose value becomes one field of ``TaskFilters``."""

    request: HttpRequest

    @abstractmethod
    def filters_for(self, value: str) -> TaskFilters:
        """The filters for ``value``; ValueError (shown to the operator) when it is bad."""

    def narrowed(self, request: HttpRequest, queryset: QuerySet[Job], value: str | None) -> Any:
        if not value:
            return queryset
        try:
            return narrow(queryset, self.filters_for(value))
        except ValueError as exc:
            messages.warning(request, str(exc))
            return queryset


class StateFilter(TaskFilterMixin, admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state, state) for state in STATES]

    def filters_for(self, value: str) -> TaskFilters:
        if value not in STATES:
            raise ValueError(f"“{value[:40]}” is not a state: ignored.")
        return TaskFilters(state=value)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        return self.narrowed(request, queryset, self.value())


class JobFilter(TaskFilterMixin, FunctionFilter):
    def filters_for(self, value: str) -> TaskFilters:
        return TaskFilters(func=check_text("job", value))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        return self.narrowed(request, queryset, self.value())


class QueueFilter(TaskFilterMixin, admin.SimpleListFilter):
    """Configured clusters and those of declared jobs (no scan of the table)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = set(health.known_cluster_names())
        names.update(spec.cluster for spec in registry.all_jobs() if spec.cluster)
        if selected := self.value():
            names.add(selected)
        return [(name, name) for name in sorted(n for n in names if n)]

    def filters_for(self, value: str) -> TaskFilters:
        return TaskFilters(queue=check_text("queue", value))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        return self.narrowed(request, queryset, self.value())


class NodeFilter(TaskFilterMixin, admin.SimpleListFilter):
    """Worker nodes alive, or seen in the last day (the newest first)."""

    title = "worker node"
    parameter_name = "node"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        since = timezone.now() - NODES_RECENT
        nodes = WorkerNode.objects.filter(
            Q(last_beat_at__gte=since) | Q(stopped_at__isnull=True, dead_at__isnull=True)
        ).order_by("-started_at")[:NODES_SHOWN]
        choices = [(str(node.id), f"{node.host} pid {node.pid} ({node.cluster})") for node in nodes]
        selected = self.value()
        if selected and selected not in {value for value, _ in choices}:
            choices.append((selected, f"node {selected}"))
        return choices

    def filters_for(self, value: str) -> TaskFilters:
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            raise ValueError(f"“{value[:40]}” is not a worker node: ignored.")
        return TaskFilters(node=int(value))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        return self.narrowed(request, queryset, self.value())


class CreatedWithinFilter(TaskFilterMixin, admin.SimpleListFilter):
    title = "enqueued"
    parameter_name = "created"
    RANGES = {
        "1h": ("in the last hour", timedelta(hours=1)),
        "24h": ("in the last 24 hours", timedelta(hours=24)),
        "7d": ("in the last 7 days", timedelta(days=7)),
        "30d": ("in the last 30 days", timedelta(days=30)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.RANGES.items()]

    def filters_for(self, value: str) -> TaskFilters:
        if value not in self.RANGES:
            raise ValueError(f"“{value[:40]}” is not a time range: ignored.")
        return TaskFilters(created_from=timezone.now() - self.RANGES[value][1])

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        return self.narrowed(request, queryset, self.value())


class TextFilter(TaskFilterMixin, admin.ListFilter):
    """A text box in the filter column (its own GET form, the other filters kept)."""

    parameter_name: str
    template = "admin/jobs/task/text_filter.html"
    input_type = "search"
    placeholder = ""

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        self.text = ""
        if self.parameter_name in params:
            value = params.pop(self.parameter_name)
            self.text = str(value[-1] if isinstance(value, list) else value)
            if self.text:
                self.used_parameters[self.parameter_name] = self.text

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_name]

    def choices(self, changelist: Any) -> Iterator[Mapping[str, object]]:
        kept = [
            (key, value)
            for key, values in self.request.GET.lists()
            if key not in (self.parameter_name, "p", "e")
            for value in values
        ]
        yield {
            "name": self.parameter_name,
            "value": self.text,
            "hidden": kept,
            "input_type": self.input_type,
            "placeholder": self.placeholder,
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        return self.narrowed(request, queryset, self.text)


class ArgumentsFilter(TextFilter):
    title = "arguments contain"
    parameter_name = "arguments"
    placeholder = "tablo_id=42"

    def filters_for(self, value: str) -> TaskFilters:
        return TaskFilters(arguments=check_text("argument text", value))


class ErrorFilter(TextFilter):
    title = "last error contains"
    parameter_name = "error"
    placeholder = "timed out"

    def filters_for(self, value: str) -> TaskFilters:
        return TaskFilters(error=check_text("error text", value))


class CreatedFromFilter(TextFilter):
    title = "enqueued from"
    parameter_name = "created_from"
    input_type = "datetime-local"

    def filters_for(self, value: str) -> TaskFilters:
        return TaskFilters(created_from=parse_moment(value))


class CreatedUntilFilter(TextFilter):
    title = "enqueued before"
    parameter_name = "created_until"
    input_type = "datetime-local"

    def filters_for(self, value: str) -> TaskFilters:
        return TaskFilters(created_until=parse_moment(value))


# Text and node searches: counted up to the lower cap, paged by jobs.taskpage.paging.
SEARCH_PARAMETERS = (
    "q",
    ArgumentsFilter.parameter_name,
    ErrorFilter.parameter_name,
    NodeFilter.parameter_name,
)
LIST_FILTERS = (
    StateFilter,
    JobFilter,
    QueueFilter,
    NodeFilter,
    CreatedWithinFilter,
    CreatedFromFilter,
    CreatedUntilFilter,
    ArgumentsFilter,
    ErrorFilter,
)
