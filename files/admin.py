from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from files import services
from files.models import TabloFile
from tablos.models import Tablo


@admin.register(TabloFile)
class TabloFileAdmin(admin.ModelAdmin):
    list_display = ["original_name", "human_size", "content_type", "tablo_link", "created_at"]
    search_fields = ["original_name", "storage_key"]
    readonly_fields = [
        "id",
        "tablo_id",
        "storage_key",
        "original_name",
        "content_type",
        "human_size",
        "created_at",
    ]
    exclude = ["size_bytes"]
    show_full_result_count = False
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows only come with their object, from an upload

    @admin.display(description="size", ordering="size_bytes")
    def human_size(self, obj: TabloFile) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="tablo")
    def tablo_link(self, obj: TabloFile) -> str:
        # A plain uuid column (no FK, see the model), so no select_related: link by id.
        url = reverse("admin:tablos_tablo_change", args=[obj.tablo_id])
        return format_html('<a href="{}">{}</a>', url, obj.tablo_id)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Also match the owner's username or email, through the tablo ids."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            tablo_ids = Tablo.objects.filter(
                Q(owner__username__icontains=term) | Q(owner__email__icontains=term)
            ).values("id")
            results = results | queryset.filter(tablo_id__in=tablo_ids)
        return results, may_have_duplicates

    def delete_model(self, request: HttpRequest, obj: TabloFile) -> None:
        services.file_delete(tablo_file=obj)  # object first, then the row

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TabloFile]) -> None:
        for tablo_file in queryset:
            services.file_delete(tablo_file=tablo_file)
