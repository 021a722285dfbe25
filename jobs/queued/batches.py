"""Admin: "Batches", tasks enqueued together with callbacks (``registry.enqueue_batch``).

Read-only: a batch changes only as its members end (``jobs.engine.transitions``).
Each batch links to its members on the Queued tasks and Failed tasks pages.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from jobs.models import JobBatch


@admin.register(JobBatch)
class JobBatchAdmin(admin.ModelAdmin[JobBatch]):
    list_display = (
        "id",
        "name",
        "state",
        "progress",
        "succeeded",
        "dead",
        "cancelled",
        "expired",
        "created_at",
        "finished_at",
    )
    list_display_links = ("id", "name")
    ordering = ("-id",)
    sortable_by = ()
    show_full_result_count = False
    list_per_page = 50
    readonly_fields = (
        "name",
        "state",
        "progress",
        "total",
        "succeeded",
        "dead",
        "cancelled",
        "expired",
        "created_at",
        "finished_at",
        "on_success",
        "on_failure",
        "on_finish",
        "callbacks",
        "members",
    )
    fields = readonly_fields

    @admin.display(description="state")
    def state(self, obj: JobBatch) -> str:
        return obj.state

    @admin.display(description="progress")
    def progress(self, obj: JobBatch) -> str:
        percent = 100 * obj.ended // obj.total if obj.total else 100
        return f"{obj.ended}/{obj.total} ended ({percent}%)"

    @admin.display(description="members")
    def members(self, obj: JobBatch) -> str:
        waiting = reverse("admin:jobs_queuedjob_changelist") + f"?batch={obj.id}"
        failed = reverse("admin:jobs_failedjob_changelist") + f"?batch={obj.id}"
        return format_html(
            '<a href="{}">waiting or running</a> · <a href="{}">failed, cancelled or expired</a>',
            waiting,
            failed,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
