from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tablos import services
from tablos.models import Tablo


@admin.register(Tablo)
class TabloAdmin(admin.ModelAdmin):
    # files.admin registers a subclass that adds the file count and total size.
    list_display = ["name", "owner", "created_at"]
    search_fields = ["name", "owner__username", "owner__email"]
    raw_id_fields = ["owner"]
    list_select_related = ["owner"]
    readonly_fields = ["id", "created_at", "updated_at"]
    # Large tables: no COUNT(*) of the whole table on every changelist.
    show_full_result_count = False
    ordering = ["-created_at"]

    def delete_model(self, request: HttpRequest, obj: Tablo) -> None:
        # Through the service so the purge job removes the tablo's objects.
        services.tablo_delete(tablo=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tablo]) -> None:
        count = 0
        for tablo in queryset:
            services.tablo_delete(tablo=tablo)
            count += 1
        self.message_user(
            request,
            f"Files of {count} tablo(s) are being removed in the background.",
            messages.INFO,
        )
