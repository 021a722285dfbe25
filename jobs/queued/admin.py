"""Admin: "Queued tasks", the rows of the project broker's queue (see docs/worker.md).

django-q2's own "Queued tasks" page reads ``django_q_ormq``, a table the project
broker never writes; jobs.admin unregisters it and imports this module.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from jobs.admin_rows import (
    CappedPaginator,
    JobRowsMixin,
    StateFilter,
    admin_user,
    decode_payload,
    job_id,
    task_url,
)
from jobs.failures.selectors import HEAVY_FIELDS
from jobs.models import Job, QueuedJob
from jobs.queued.services import cancel_queued

SHOWN_STATES = (Job.State.QUEUED, Job.State.RUNNING, Job.State.RETRYING)


class QueuedStateFilter(StateFilter):
    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("queued", "queued"),
            ("running", "running"),
            ("retrying", "retrying (waiting for the next attempt)"),
        ]


@admin.register(QueuedJob)
class QueuedJobAdmin(JobRowsMixin, admin.ModelAdmin[Job]):
    list_display = (
        "task_name",
        "job",
        "state",
        "queue",
        "attempts",
        "runs_at",
        "created_at",
        "claimed_by",
        "progress",
    )
    list_display_links = ("task_name",)
    list_filter = (QueuedStateFilter,)
    # The broker's claim order (jobs_job_claim_idx): the next task a worker takes
    # comes first in its queue, and the page reads the index without sorting.
    ordering = ("queue", "-priority", "run_at", "id")
    sortable_by = ()
    paginator = CappedPaginator
    show_full_result_count = False
    # "Show counts" would count every choice of every filter over the whole table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    actions = ("cancel_selected",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return super().get_queryset(request).filter(state__in=SHOWN_STATES).defer(*HEAVY_FIELDS)

    @admin.display(description="task name")
    def task_name(self, obj: Job) -> str:
        return obj.name

    @admin.display(description="job / function")
    def job(self, obj: Job) -> str:
        return format_html(
            '{}<br><small>{}</small><br><small><a href="{}">task page</a></small>',
            obj.job_name or "(unregistered)",
            obj.func,
            task_url(obj.task_id),
        )

    @admin.display(description="runs at")
    def runs_at(self, obj: Job) -> Any:
        return obj.run_at

    # --- read-only rows; the one action goes through the service --------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would delete running rows, unlogged by state
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        return HttpResponseRedirect(reverse("admin:jobs_queuedjob_change", args=[object_id]))

    @admin.action(description="Cancel selected queued tasks", permissions=["delete"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        count = cancel_queued(queryset=queryset, user=admin_user(request))
        if count:
            self.message_user(request, f"Cancelled {count} queued task(s).", messages.SUCCESS)
        kept = queryset.count()
        if kept:
            self.message_user(
                request,
                f"Not cancelled {kept} task(s): only queued tasks can be cancelled, "
                "running and retrying ones are left alone.",
                messages.WARNING,
            )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The task's detail: its row and its arguments."""
        job = get_object_or_404(Job.objects.filter(state__in=SHOWN_STATES), pk=job_id(object_id))
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/jobs/queuedjob/detail.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": str(job),
                "job": job,
                "original": job,
                "payload": decode_payload(job.payload),
            },
        )
