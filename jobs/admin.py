"""Admin: the project's pages over django-q2's, registered in one place.

"Failed tasks" (jobs.failures.admin), "Queued tasks" (jobs.queued.admin) and the
Overview (jobs.dashboard.admin) replace django-q2's stock pages, and its Scheduled
tasks page gains "Run now". See docs/failures.md and docs/worker.md.
"""

from __future__ import annotations

import contextlib

from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.db.models import QuerySet
from django.http import HttpRequest
from django_q.admin import ScheduleAdmin
from django_q.models import Failure, OrmQ, Schedule

# Importing the pages registers them.
import jobs.dashboard.admin
import jobs.failures.admin
import jobs.queued.admin  # noqa: F401
from jobs import schedules
from jobs.admin_rows import admin_user

# Importing django_q.admin (above) registered its pages first, whatever the order of
# INSTALLED_APPS. Its Failed page shows its own result table, without attempts or history.
with contextlib.suppress(NotRegistered):
    admin.site.unregister(Failure)
# django-q2's "Queued tasks" reads django_q_ormq, which the project broker never
# writes: always empty. jobs.queued.admin shows the broker's own queue instead.
with contextlib.suppress(NotRegistered):
    admin.site.unregister(OrmQ)
admin.site.unregister(Schedule)


@admin.register(Schedule)
class RunNowScheduleAdmin(ScheduleAdmin):  # type: ignore[misc]  # django-q2 ships no types
    """django-q2's Scheduled tasks page, plus "Run now"."""

    actions = ("run_now",)

    @admin.action(description="Run selected schedules now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            schedules.schedule_run_now(schedule=schedule, user=admin_user(request))
        self.message_user(request, f"Enqueued {len(queryset)} run(s).", messages.SUCCESS)
