"""Admin: "Failed tasks", the tasks that failed at least once (see docs/failures.md)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.http import require_http_methods, require_POST

from jobs.admin_rows import (
    COUNT_CAP,
    LIST_FILTERS,
    SEARCH_COUNT_CAP,
    CappedPaginator,
    JobRowsMixin,
    admin_user,
    decode_payload,
    job_id,
)
from jobs.failures import services
from jobs.failures.selectors import HEAVY_FIELDS, failed_groups, search_failed, task_attempts
from jobs.models import FailedJob, Job

MESSAGE_WIDTH = 80
GROUPS_SHOWN = 200
CONFIRM_SHOWN = 50  # tasks a discard confirmation lists before "and N more"
GROUPS_DEFAULT_WINDOW = "7d"


@admin.register(FailedJob)
class FailedJobAdmin(JobRowsMixin, admin.ModelAdmin[Job]):
    list_display = (
        "task",
        "state",
        "attempts",
        "error",
        "first_failed_at",
        "last_failed_at",
        "next_retry",
        "task_page",
    )
    list_display_links = ("task",)
    list_filter = LIST_FILTERS
    search_fields = ("last_error_message",)  # get_search_results does the search
    search_help_text = "Part of the error message, task name or function, or a task id."
    ordering = ("-last_failed_at", "-id")
    sortable_by = ()  # one order, the one the indexes serve
    paginator = CappedPaginator
    show_full_result_count = False
    # "Show counts" would count every choice of every filter over the whole table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    actions = ("retry_selected", "discard_selected")
    change_list_template = "admin/jobs/failedjob/change_list.html"

    # --- queryset and columns -------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return (
            super().get_queryset(request).filter(last_failed_at__isnull=False).defer(*HEAVY_FIELDS)
        )

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> CappedPaginator:
        cap = SEARCH_COUNT_CAP if request.GET.get("q", "").strip() else COUNT_CAP
        return CappedPaginator(queryset, per_page, orphans, allow_empty_first_page, cap=cap)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        return search_failed(queryset, search_term), False

    @admin.display(description="task")
    def task(self, obj: Job) -> str:
        return format_html("{}<br><small>{}</small>", obj.job_name or obj.name, obj.func)

    @admin.display(description="last error")
    def error(self, obj: Job) -> str:
        message = Truncator((obj.last_error_message or "").strip().split("\n")[0]).chars(
            MESSAGE_WIDTH
        )
        return format_html("<code>{}</code> {}", obj.last_error_type.rsplit(".", 1)[-1], message)

    @admin.display(description="next retry")
    def next_retry(self, obj: Job) -> Any:
        return obj.run_at if obj.state == Job.State.RETRYING else "—"

    # --- permissions: read-only rows, actions through the services -----------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_actions(
        self,
        request: HttpRequest,
        action_location: admin.ActionLocation = admin.ActionLocation.CHANGE_LIST,
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)  # discard goes through the service (and the log)
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        return HttpResponseRedirect(reverse("admin:jobs_failedjob_change", args=[object_id]))

    # --- actions on selected rows ---------------------------------------------
    @admin.action(description="Retry selected tasks", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        count = services.retry_failed(queryset=queryset, user=admin_user(request))
        self.message_user(request, f"Retried {count} task(s).", messages.SUCCESS)

    @admin.action(description="Discard selected tasks…", permissions=["delete"])
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        # Like Django's "Delete selected": a confirmation page first, the change on
        # its "Yes" (which posts the same action again with post=yes).
        if request.POST.get("post") == "yes":
            count = services.discard_failed(queryset=queryset, user=admin_user(request))
            self.message_user(request, f"Discarded {count} task(s).", messages.SUCCESS)
            return None
        failed = queryset.filter(state__in=Job.FAILED_STATES).order_by("id")
        return TemplateResponse(
            request,
            "admin/jobs/failedjob/confirm_discard.html",
            self._context(
                request,
                title="Discard the selected failed tasks?",
                jobs=failed[:CONFIRM_SHOWN],
                count=(count := failed.count()),
                more=count - CONFIRM_SHOWN,
                selected=request.POST.getlist(ACTION_CHECKBOX_NAME),
                select_across=request.POST.get("select_across", "0"),
                action_url=request.get_full_path(),
                back_url=request.get_full_path(),
            ),
        )

    # --- extra pages ------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("groups/", wrap(self.groups_view), name="jobs_failedjob_groups"),
            path(
                "retry-matching/",
                wrap(self.retry_matching_view),
                name="jobs_failedjob_retry_matching",
            ),
            path(
                "discard-matching/",
                wrap(self.discard_matching_view),
                name="jobs_failedjob_discard_matching",
            ),
            path("<path:object_id>/retry/", wrap(self.retry_one_view), name="jobs_failedjob_retry"),
            path(
                "<path:object_id>/discard/",
                wrap(self.discard_one_view),
                name="jobs_failedjob_discard",
            ),
            *super().get_urls(),
        ]

    def _filtered(self, request: HttpRequest) -> QuerySet[Job]:
        """The changelist's queryset for the filters and search in the query string."""
        return self.get_changelist_instance(request).get_queryset(request)

    def _filter_query(self, request: HttpRequest) -> str:
        return urlencode(sorted((k, v) for k, v in request.GET.items() if k not in ("p", "o")))

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        query = self._filter_query(request)
        return super().changelist_view(
            request,
            {**(extra_context or {}), "filter_query": query, **(self._action_perms(request))},
        )

    def _action_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {
            "can_retry": self.has_change_permission(request),
            "can_discard": self.has_delete_permission(request),
        }

    def groups_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if "failed" not in request.GET:
            # Grouping reads every matching row: start from a bounded window.
            query = request.GET.copy()
            query["failed"] = GROUPS_DEFAULT_WINDOW
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        base = self._filter_query(request)
        groups = [
            {
                **group,
                "query": "&".join(
                    part
                    for part in (base, urlencode({"signature": group["error_signature"]}))
                    if part
                ),
            }
            for group in failed_groups(self._filtered(request), limit=GROUPS_SHOWN)
        ]
        return TemplateResponse(
            request,
            "admin/jobs/failedjob/groups.html",
            self._context(
                request,
                title="Failed tasks by error",
                groups=groups,
                filter_query=base,
                shown=GROUPS_SHOWN,
                **self._action_perms(request),
            ),
        )

    def _matching_view(self, request: HttpRequest, *, verb: str) -> HttpResponse:
        allowed = (
            self.has_change_permission(request)
            if verb == "retry"
            else self.has_delete_permission(request)
        )
        if not allowed:
            raise PermissionDenied
        queryset = self._filtered(request).filter(state__in=Job.FAILED_STATES)
        query = self._filter_query(request)
        if request.method == "POST":
            action = services.retry_failed if verb == "retry" else services.discard_failed
            count = action(queryset=queryset, user=admin_user(request))
            past = "Retried" if verb == "retry" else "Discarded"
            self.message_user(request, f"{past} {count} task(s).", messages.SUCCESS)
            url = reverse("admin:jobs_failedjob_changelist")
            return HttpResponseRedirect(f"{url}?{query}" if query else url)
        return TemplateResponse(
            request,
            "admin/jobs/failedjob/confirm_matching.html",
            self._context(
                request,
                title=f"{verb.capitalize()} all matching failed tasks?",
                verb=verb,
                count=queryset.count(),
                filters=sorted(request.GET.items()),
                filter_query=query,
            ),
        )

    def retry_matching_view(self, request: HttpRequest) -> HttpResponse:
        return self._matching_view(request, verb="retry")

    def discard_matching_view(self, request: HttpRequest) -> HttpResponse:
        return self._matching_view(request, verb="discard")

    def _one(self, request: HttpRequest, object_id: str) -> Job:
        return get_object_or_404(self.get_queryset(request), pk=job_id(object_id))

    def retry_one_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._retry_one)(request, object_id)

    def _retry_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._one(request, object_id)
        if not self.has_change_permission(request, job):
            raise PermissionDenied
        if services.retry_failed(queryset=Job.objects.filter(id=job.id), user=admin_user(request)):
            self.message_user(request, f"Retried {job}: queued to run now.", messages.SUCCESS)
        else:
            self.message_user(request, f"Not retried {job}: it is {job.state}.", messages.WARNING)
        # Not back to the task's page: once the retried (or already queued) task succeeds,
        # its row is gone and that page is a 404.
        return HttpResponseRedirect(reverse("admin:jobs_failedjob_changelist"))

    def discard_one_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_http_methods(["GET", "POST"])(self._discard_one)(request, object_id)

    def _discard_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._one(request, object_id)
        if not self.has_delete_permission(request, job):
            raise PermissionDenied
        if request.method == "GET":  # the detail page's Discard asks first
            return TemplateResponse(
                request,
                "admin/jobs/failedjob/confirm_discard.html",
                self._context(
                    request,
                    title=f"Discard {job}?",
                    jobs=[job],
                    count=1,
                    more=0,
                    action_url=request.path,
                    back_url=reverse("admin:jobs_failedjob_change", args=[job.pk]),
                ),
            )
        if services.discard_failed(
            queryset=Job.objects.filter(id=job.id), user=admin_user(request)
        ):
            self.message_user(request, f"Discarded {job}.", messages.SUCCESS)
        else:
            # Queued or running: it may succeed (row gone) before the operator looks again.
            self.message_user(request, f"Not discarded {job}: it is {job.state}.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:jobs_failedjob_changelist"))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The task's detail: arguments and every attempt with its traceback."""
        job = get_object_or_404(
            Job.objects.filter(last_failed_at__isnull=False), pk=job_id(object_id)
        )
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/jobs/failedjob/detail.html",
            self._context(
                request,
                title=str(job),
                job=job,
                original=job,
                payload=decode_payload(job.payload),
                attempts=list(task_attempts(task_id=job.task_id)),
                retryable=job.state in Job.FAILED_STATES,
                **self._action_perms(request),
            ),
        )
