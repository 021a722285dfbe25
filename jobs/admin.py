"""Admin: the project's pages over django-q2's, registered in one place.

"Failed tasks" (jobs.failures.admin), "Queued tasks" (jobs.queued.admin) and the
Overview (jobs.dashboard.admin) replace django-q2's stock pages, and its Scheduled
tasks page gains "Run now" and a "last run" column that links to the pages this
project has. See docs/failures.md and docs/worker.md.
"""

from __future__ import annotations

import contextlib

from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.db import models
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django_q.admin import ScheduleAdmin
from django_q.admin import TaskAdmin as ResultAdmin
from django_q.models import Failure, OrmQ, Schedule, Success

# Importing the pages registers them.
import jobs.dashboard.admin
import jobs.failures.admin
import jobs.queued.admin
import jobs.queued.batches
import jobs.taskpage.admin  # noqa: F401
from jobs import schedules
from jobs.admin_rows import admin_user, task_url
from jobs.models import FailedJob

# Importing django_q.admin (above) registered its pages first, whatever the order of
# INSTALLED_APPS. Its Failed page shows its own result table, without attempts or history.
with contextlib.suppress(NotRegistered):
    admin.site.unregister(Failure)
# django-q2's "Queued tasks" reads django_q_ormq, which the project broker never
# writes: always empty. jobs.queued.admin shows the broker's own queue instead.
with contextlib.suppress(NotRegistered):
    admin.site.unregister(OrmQ)
admin.site.unregister(Schedule)
admin.site.unregister(Success)


@admin.register(Success)
class SuccessAdmin(ResultAdmin):  # type: ignore[misc]  # django-q2 ships no types
    """django-q2's Successful tasks page, each row linking to the task's page."""

    list_display = (*ResultAdmin.list_display, "task_page")

    @admin.display(description="task page")
    def task_page(self, obj: Success) -> str:
        return format_html('<a href="{}">{}…</a>', task_url(obj.id), obj.id[:8])


@admin.register(Schedule)
class RunNowScheduleAdmin(ScheduleAdmin):  # type: ignore[misc]  # django-q2 ships no types
    """django-q2's Scheduled tasks page, plus "Run now", and "last run" linking to our pages.

    django-q2's column links a failed last run to its own Failure page, which is
    unregistered above (a ``NoReverseMatch``, so the whole list was a 500). Here a failed
    run links to the task's "Failed tasks" page while its queue row is there (until it
    is discarded, or retried and succeeds), a successful one to "Successful tasks", and
    the task's name is plain text when neither page exists.
    """

    actions = ("run_now",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        failed = FailedJob.objects.filter(task_id=OuterRef("task"), last_failed_at__isnull=False)
        queryset: QuerySet[Schedule] = (
            super().get_queryset(request).annotate(failed_job_id=Subquery(failed.values("id")[:1]))
        )
        return queryset

    @admin.display(description="last run")
    def get_last_run(self, obj: Schedule) -> str | None:
        # task_name, task_success and task_id: django-q2's annotations of the last Task row.
        if obj.task_name is None:
            return None  # never run, or its result was pruned
        label = f"[{obj.task_name}]"
        if obj.task_success:
            page = self._change_url(Success, obj.task_id)
        elif obj.failed_job_id is not None:
            page = self._change_url(FailedJob, obj.failed_job_id)
        else:
            page = None
        return format_html('<a href="{}">{}</a>', page, label) if page else label

    def _change_url(self, model: type[models.Model], pk: object) -> str | None:
        if not self.admin_site.is_registered(model):
            return None
        info = (self.admin_site.name, model._meta.app_label, model._meta.model_name)
        return reverse("{}:{}_{}_change".format(*info), args=(pk,))

    @admin.action(description="Run selected schedules now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            schedules.schedule_run_now(schedule=schedule, user=admin_user(request))
        self.message_user(request, f"Enqueued {len(queryset)} run(s).", messages.SUCCESS)
