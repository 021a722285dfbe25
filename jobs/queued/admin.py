"""Admin: "Queued tasks", the rows of the project broker's queue (see docs/worker.md).

django-q2's own "Queued tasks" page reads ``django_q_ormq``, a table the project
broker never writes; jobs.admin unregisters it and imports this module.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from jobs.admin_rows import (
    BatchFilter,
    CappedPaginator,
    FunctionFilter,
    JobRowsMixin,
    StateFilter,
    admin_user,
    decode_payload,
    job_id,
    task_url,
)
from jobs.failures.selectors import HEAVY_FIELDS
from jobs.models import Job, QueuedJob
from jobs.queued.services import MAX_GRACE, cancel_jobs, cancel_summary, parse_grace

SHOWN_STATES = (Job.State.QUEUED, Job.State.RUNNING, Job.State.RETRYING)
CONFIRM_SHOWN = 50  # tasks a cancel confirmation lists before "and N more"


def _grace(value: str) -> int | None:
    """The confirmation form's grace: empty is the setting; None when it is not valid."""
    try:
        return parse_grace(value) if value.strip() else settings.JOBS_CANCEL_GRACE_SECONDS
    except ValueError:
        return None


def _next_page(request: HttpRequest) -> str | None:
    """``?next=`` when it is a path on this site (never another host)."""
    target = request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


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
        "state_shown",
        "queue",
        "attempts_and_snoozes",
        "runs_at",
        "created_at",
        "claimed_by",
        "progress",
    )
    list_display_links = ("task_name",)
    list_filter = (QueuedStateFilter, FunctionFilter, BatchFilter)
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
    change_list_template = "admin/jobs/queuedjob/change_list.html"

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

    @admin.display(description="state")
    def state_shown(self, obj: Job) -> str:
        # Who asked is on the task's page: the list stays narrow.
        return f"{obj.state} (stop requested)" if obj.cancel_requested_at else obj.state

    @admin.display(description="attempts")
    def attempts_and_snoozes(self, obj: Job) -> str:
        if not obj.snoozes:
            return self.attempts(obj)
        return format_html(
            "{}<br><small>{} snooze{}</small>",
            self.attempts(obj),
            obj.snoozes,
            "" if obj.snoozes == 1 else "s",
        )

    @admin.display(description="runs at")
    def runs_at(self, obj: Job) -> Any:
        return obj.run_at

    # --- read-only rows; the one action goes through the service --------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(
        self,
        request: HttpRequest,
        action_location: admin.ActionLocation = admin.ActionLocation.CHANGE_LIST,
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)  # would delete running rows, unlogged by state
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        return HttpResponseRedirect(reverse("admin:jobs_queuedjob_change", args=[object_id]))

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Cancel selected tasks…", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        # Like "Delete selected": a confirmation page first (with the grace), the change
        # on its "Yes" (which posts the same action again with post=yes).
        if request.POST.get("post") == "yes":
            self._cancel(request, queryset)
            return None
        return self._confirm(
            request,
            queryset,
            title="Cancel the selected tasks?",
            action_url=request.get_full_path(),
            back_url=request.get_full_path(),
            selected=request.POST.getlist(ACTION_CHECKBOX_NAME),
            select_across=request.POST.get("select_across", "0"),
        )

    def _cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        grace = _grace(request.POST.get("grace", ""))
        if grace is None:
            self.message_user(
                request,
                f"Nothing cancelled: the grace must be whole seconds from 0 to {MAX_GRACE}.",
                messages.ERROR,
            )
            return
        done = cancel_jobs(queryset=queryset, user=admin_user(request), grace=grace)
        self.message_user(request, cancel_summary(done, grace=grace), messages.SUCCESS)

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[Job], **extra: Any
    ) -> TemplateResponse:
        active = queryset.filter(state__in=Job.ACTIVE_STATES).order_by("id")
        counts = dict(
            active.order_by().values_list("state").annotate(n=Count("id")).values_list("state", "n")
        )
        count = sum(counts.values())
        return TemplateResponse(
            request,
            "admin/jobs/queuedjob/confirm_cancel.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "jobs": active[:CONFIRM_SHOWN],
                "count": count,
                "more": count - CONFIRM_SHOWN,
                "running": counts.get(Job.State.RUNNING, 0),
                "grace": settings.JOBS_CANCEL_GRACE_SECONDS,
                **extra,
            },
        )

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "cancel-matching/",
                wrap(self.cancel_matching_view),
                name="jobs_queuedjob_cancel_matching",
            ),
            path(
                "<path:object_id>/cancel/", wrap(self.cancel_one_view), name="jobs_queuedjob_cancel"
            ),
            *super().get_urls(),
        ]

    def _filter_query(self, request: HttpRequest) -> str:
        return urlencode(sorted((k, v) for k, v in request.GET.items() if k not in ("p", "o")))

    def cancel_matching_view(self, request: HttpRequest) -> HttpResponse:
        """Every task the list's filters match, cancelled after a confirmation page."""
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        queryset = self.get_changelist_instance(request).get_queryset(request)
        query = self._filter_query(request)
        back = reverse("admin:jobs_queuedjob_changelist") + (f"?{query}" if query else "")
        if request.method == "POST":
            self._cancel(request, queryset)
            return HttpResponseRedirect(back)
        return self._confirm(
            request,
            queryset,
            title="Cancel all matching tasks?",
            filters=sorted(request.GET.items()),
            action_url=f"?{query}" if query else request.path,
            back_url=back,
        )

    def cancel_one_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One task, after a confirmation page; ``?next=`` (a page of this site, the
        task page's Cancel button) is where "No" and the cancel lead back to."""
        job = get_object_or_404(Job.objects.filter(state__in=SHOWN_STATES), pk=job_id(object_id))
        if not self.has_cancel_permission(request, job):
            raise PermissionDenied
        queryset = Job.objects.filter(id=job.id)
        back = _next_page(request) or reverse("admin:jobs_queuedjob_change", args=[job.pk])
        if request.method == "POST":
            self._cancel(request, queryset)
            return HttpResponseRedirect(
                _next_page(request) or reverse("admin:jobs_queuedjob_changelist")
            )
        return self._confirm(
            request,
            queryset,
            title=f"Cancel {job}?",
            action_url=request.get_full_path(),
            back_url=back,
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        return super().changelist_view(
            request,
            {
                **(extra_context or {}),
                "filter_query": self._filter_query(request),
                "can_cancel": self.has_cancel_permission(request),
            },
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
                "can_cancel": self.has_cancel_permission(request, job),
            },
        )
