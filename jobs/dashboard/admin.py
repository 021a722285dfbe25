"""Admin: Jobs -> Overview, the operator's page (see docs/dashboard.md).

The page is rendered once; its script then asks ``data/`` every few seconds for
the chart series (JSON) and the tables (HTML rendered here), without reloading.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from jobs import pauses
from jobs.admin_rows import admin_user
from jobs.dashboard.selectors import overview
from jobs.models import Job, Overview
from jobs.queued.services import cancel_jobs, cancel_summary

REFRESH_SECONDS = 5


@admin.register(Overview)
class OverviewAdmin(admin.ModelAdmin[Overview]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name="jobs_overview_changelist"),
            path("data/", wrap(never_cache(self.data_view)), name="jobs_overview_data"),
            path("pause/", wrap(require_POST(self.pause_view)), name="jobs_overview_pause"),
            path("resume/", wrap(require_POST(self.resume_view)), name="jobs_overview_resume"),
            path("cancel/", wrap(require_POST(self.cancel_view)), name="jobs_overview_cancel"),
        ]

    def _tables(self, request: HttpRequest, figures: dict[str, Any]) -> str:
        failed_url = reverse("admin:jobs_failedjob_changelist")
        tasks_url = reverse("admin:jobs_task_changelist")
        for row in figures["jobs"]:
            query = urlencode({"func": row["func"]})
            row["failed_url"] = f"{failed_url}?{query}"
            row["tasks_url"] = f"{tasks_url}?{query}"
        return render_to_string(
            "admin/jobs/overview/_tables.html",
            {
                **figures,
                "can_pause": self.has_change_permission(request),
                "can_cancel": request.user.has_perm("jobs.change_queuedjob"),
                "cancel_grace": settings.JOBS_CANCEL_GRACE_SECONDS,
            },
            request=request,
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        figures = overview()
        return TemplateResponse(
            request,
            "admin/jobs/overview/change_list.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Jobs overview",
                "charts": figures["charts"],
                "tables": self._tables(request, figures),
                "data_url": reverse("admin:jobs_overview_data"),
                "search_url": reverse("admin:jobs_task_changelist"),
                "refresh_ms": REFRESH_SECONDS * 1000,
                "refresh_seconds": REFRESH_SECONDS,
            },
        )

    def data_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        figures = overview()
        return JsonResponse(
            {
                "now": figures["now"].isoformat(),
                "charts": figures["charts"],
                "tables": self._tables(request, figures),
            }
        )

    def _pause_action(self, request: HttpRequest, *, resume: bool) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        action = pauses.resume_queue if resume else pauses.pause_queue
        try:
            status = action(queue=request.POST.get("queue", ""), user=admin_user(request))
        except pauses.QueueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            verb = "Resumed" if resume else "Paused"
            if status.changed:
                self.message_user(request, f"{verb} queue “{status.queue}”.", messages.SUCCESS)
            else:
                state = "paused" if status.paused else "not paused"
                self.message_user(
                    request, f"Queue “{status.queue}” was already {state}.", messages.WARNING
                )
        return HttpResponseRedirect(reverse("admin:jobs_overview_changelist"))

    def pause_view(self, request: HttpRequest) -> HttpResponse:
        return self._pause_action(request, resume=False)

    def resume_view(self, request: HttpRequest) -> HttpResponse:
        return self._pause_action(request, resume=True)

    def cancel_view(self, request: HttpRequest) -> HttpResponse:
        """Cancel one task from the Running tasks table (the setting's grace)."""
        if not request.user.has_perm("jobs.change_queuedjob"):
            raise PermissionDenied
        value = request.POST.get("task", "")
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            self.message_user(request, "No such task.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:jobs_overview_changelist"))
        grace = settings.JOBS_CANCEL_GRACE_SECONDS
        done = cancel_jobs(
            queryset=Job.objects.filter(id=int(value)), user=admin_user(request), grace=grace
        )
        if done.count:
            self.message_user(request, cancel_summary(done, grace=grace), messages.SUCCESS)
        else:
            self.message_user(request, "Not cancelled: the task has ended.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:jobs_overview_changelist"))


class _GetAppList(Protocol):
    def __call__(self, request: HttpRequest, app_label: str | None = None) -> list[Any]: ...


def _overview_first(get_app_list: _GetAppList) -> _GetAppList:
    """The admin lists an app's models by name; Overview leads the Jobs section."""

    def wrapper(request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = get_app_list(request, app_label)
        for app in apps:
            if app["app_label"] == "jobs":
                app["models"].sort(key=lambda model: model["object_name"] != "Overview")
        return apps

    return wrapper


# Replaces the method on the one site instance, on purpose (no AdminSite subclass to install).
admin.site.get_app_list = _overview_first(admin.site.get_app_list)  # type: ignore[method-assign]
