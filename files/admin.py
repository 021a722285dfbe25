from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from files import services
from files.models import TabloFile
from tablos.admin import TabloAdmin
from tablos.models import Tablo

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _Totals(TypedDict):
    """What the tablo admin's get_queryset annotates each tablo with."""

    file_count: int
    total_bytes: int


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


# The tablo changelist's file columns: tablos knows nothing of files, so this
# app replaces tablos.admin's registration with one that adds them.
admin.site.unregister(Tablo)


@admin.register(Tablo)
class TabloWithFilesAdmin(TabloAdmin):
    list_display = ["name", "owner", "file_count", "total_size", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tablo]:
        # One correlated subquery per column (on files_tablo_created_idx), evaluated
        # only for the page shown, instead of a query per row.
        files = TabloFile.objects.filter(tablo_id=OuterRef("id")).order_by().values("tablo_id")
        return (
            super()
            .get_queryset(request)
            .annotate(
                file_count=Coalesce(
                    Subquery(files.annotate(n=Count("id")).values("n")[:1]),
                    0,
                    output_field=IntegerField(),
                ),
                total_bytes=Coalesce(
                    Subquery(files.annotate(total=Sum("size_bytes")).values("total")[:1]),
                    0,
                    output_field=IntegerField(),
                ),
            )
        )

    @admin.display(description="files", ordering="file_count")
    def file_count(self, obj: "WithAnnotations[Tablo, _Totals]") -> int:
        return obj.file_count

    @admin.display(description="total size", ordering="total_bytes")
    def total_size(self, obj: "WithAnnotations[Tablo, _Totals]") -> str:
        return filesizeformat(obj.total_bytes)
