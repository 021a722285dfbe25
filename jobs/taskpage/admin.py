"""Admin: Jobs -> Tasks, the search over every task, and each task's page.

``/admin/jobs/task/`` searches the tasks that have a queue row (queued, running,
retrying, dead) by id, job, queue, state, node, time and argument or error text;
``/admin/jobs/task/<task id>/`` shows one task's whole life, finished ones included
(see docs/dashboard.md). Every task list of the admin links to the page.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.http import require_http_methods, require_POST
from django_q.models import Task as Result

from jobs.admin_rows import CappedPaginator, JobRowsMixin, admin_user, task_url
from jobs.failures import services
from jobs.models import Job, JobAttempt, Task
from jobs.taskpage.filters import LIST_FILTERS, SEARCH_PARAMETERS, check_text
from jobs.taskpage.life import TASK_ID_MAX, task_life
from jobs.taskpage.paging import paginator_for
from jobs.taskpage.selectors import TaskFilters, narrow, ordered

ARGUMENTS_WIDTH = 80
ERROR_WIDTH = 80
_TASK_ID = re.compile(rf"^[0-9A-Za-z_-]{{1,{TASK_ID_MAX}}}$")


class TaskChangeList(ChangeList):
    """Django reads a single page as the whole query, without the paginator: here the
    paginator reads it too, with the plan that holds for a rare match (jobs.taskpage.paging)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if not self.multi_page:
            self.result_list = self.paginator.page(1).object_list


@admin.register(Task)
class TaskAdmin(JobRowsMixin, admin.ModelAdmin[Job]):
    list_display = (
        "task",
        "state",
        "queue",
        "attempts",
        "created_at",
        "worker",
        "progress",
        "arguments",
        "error",
    )
    list_display_links = None
    list_filter = LIST_FILTERS
    search_fields = ("task_id",)  # get_search_results does the search
    search_help_text = (
        "A task id, or text of the arguments (name=value) or of the last error. "
        "Text filters use 3 characters or more to be fast."
    )
    ordering = ("-created_at", "-id")
    sortable_by = ()  # one order, the one the indexes serve
    paginator = CappedPaginator
    show_full_result_count = False
    # "Show counts" would count every choice of every filter over the whole table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 50  # no "Show all": every page goes through the paginator
    actions = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return ordered(super().get_queryset(request))

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> CappedPaginator:
        return paginator_for(
            queryset,
            searching=any(request.GET.get(name, "").strip() for name in SEARCH_PARAMETERS),
            per_page=per_page,
            orphans=orphans,
            allow_empty_first_page=allow_empty_first_page,
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        if not search_term.strip():
            return queryset, False
        try:
            term = check_text("search", search_term.strip())
        except ValueError as exc:
            messages.warning(request, str(exc))
            return queryset.none(), False
        return narrow(queryset, TaskFilters(text=term)), False

    # --- columns --------------------------------------------------------------
    @admin.display(description="task")
    def task(self, obj: Job) -> str:
        return format_html(
            '<a href="{}">{}</a><br><small>{}</small>',
            task_url(obj.task_id),
            obj.job_name or obj.name,
            obj.func,
        )

    @admin.display(description="worker")
    def worker(self, obj: Job) -> str:
        return obj.claimed_by or "—"

    @admin.display(description="arguments")
    def arguments(self, obj: Job) -> str:
        return format_html("<code>{}</code>", Truncator(obj.search_text).chars(ARGUMENTS_WIDTH))

    @admin.display(description="last error")
    def error(self, obj: Job) -> str:
        if not obj.last_failed_at:
            return "—"
        message = Truncator((obj.last_error_message or "").strip().split("\n")[0]).chars(
            ERROR_WIDTH
        )
        return format_html("<code>{}</code> {}", obj.last_error_type.rsplit(".", 1)[-1], message)

    # --- read-only: the actions go through the failures services ---------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _may(self, request: HttpRequest, codename: str) -> bool:
        return bool(request.user.has_perm(f"jobs.{codename}_failedjob"))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name="jobs_task_changelist"),
            path("<path:object_id>/retry/", wrap(self.retry_view), name="jobs_task_retry"),
            path("<path:object_id>/discard/", wrap(self.discard_view), name="jobs_task_discard"),
            path("<path:object_id>/", wrap(self.change_view), name="jobs_task_change"),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # A task id alone opens its page, which also knows finished tasks.
        term = request.GET.get("q", "").strip()
        if set(request.GET) == {"q"} and _TASK_ID.fullmatch(term) and _known(term):
            return HttpResponseRedirect(task_url(term))
        return super().changelist_view(request, {"title": "Tasks", **(extra_context or {})})

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The task page: timeline, attempts, arguments, progress, trace, actions."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        task_id = unquote(object_id)
        life = task_life(task_id=task_id)
        if life is None:
            return TemplateResponse(
                request,
                "admin/jobs/task/missing.html",
                self._context(
                    request,
                    title="No such task",
                    task_id=task_id,
                    retention_days=settings.JOBS_HISTORY_RETENTION_DAYS,
                ),
                status=404,
            )
        return TemplateResponse(
            request,
            "admin/jobs/task/page.html",
            self._context(
                request,
                title=f"{life.job_name or life.name or life.func} [{task_id}]",
                life=life,
                can_retry=life.retryable and self._may(request, "change"),
                can_discard=life.retryable and self._may(request, "delete"),
                # Cancel is the Queued tasks page's action (its confirmation, its grace).
                can_cancel=life.cancellable and request.user.has_perm("jobs.change_queuedjob"),
            ),
        )

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._retry)(request, unquote(object_id))

    def _retry(self, request: HttpRequest, task_id: str) -> HttpResponse:
        if not self._may(request, "change"):
            raise PermissionDenied
        rows = Job.objects.filter(task_id=task_id)
        if services.retry_failed(queryset=rows, user=admin_user(request)):
            self.message_user(request, "Retried: queued to run now.", messages.SUCCESS)
        else:
            self.message_user(
                request, "Not retried: only a retrying or dead task can be.", messages.WARNING
            )
        return HttpResponseRedirect(task_url(task_id))

    def discard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_http_methods(["GET", "POST"])(self._discard)(request, unquote(object_id))

    def _discard(self, request: HttpRequest, task_id: str) -> HttpResponse:
        if not self._may(request, "delete"):
            raise PermissionDenied
        rows = Job.objects.filter(task_id=task_id)
        if request.method == "GET":  # ask first, as the Failed tasks page does
            failed = list(rows.filter(state__in=(Job.State.RETRYING, Job.State.DEAD)))
            return TemplateResponse(
                request,
                "admin/jobs/failedjob/confirm_discard.html",
                self._context(
                    request,
                    title="Discard this task?",
                    jobs=failed,
                    count=len(failed),
                    more=0,
                    action_url=request.path,
                    back_url=task_url(task_id),
                ),
            )
        if services.discard_failed(queryset=rows, user=admin_user(request)):
            self.message_user(request, "Discarded: removed from the queue.", messages.SUCCESS)
        else:
            self.message_user(
                request, "Not discarded: only a retrying or dead task can be.", messages.WARNING
            )
        if _known(task_id):
            return HttpResponseRedirect(task_url(task_id))
        return HttpResponseRedirect(reverse("admin:jobs_task_changelist"))


def _known(task_id: str) -> bool:
    """Whether anything is kept about the task (three lookups by primary or indexed key)."""
    return (
        Job.objects.filter(task_id=task_id).exists()
        or JobAttempt.objects.filter(task_id=task_id).exists()
        or Result.objects.filter(id=task_id).exists()
    )
