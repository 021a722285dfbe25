from typing import TYPE_CHECKING, TypedDict

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from files.models import TabloFile
from tablos import services
from tablos.models import Tablo

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _Totals(TypedDict):
    """What get_queryset annotates each tablo with."""

    file_count: int
    total_bytes: int


@admin.register(Tablo)
class TabloAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "file_count", "total_size", "created_at"]
    search_fields = ["name", "owner__username", "owner__email"]
    raw_id_fields = ["owner"]
    list_select_related = ["owner"]
    readonly_fields = ["id", "created_at", "updated_at"]
    # Large tables: no COUNT(*) of the whole table on every changelist.
    show_full_result_count = False
    ordering = ["-created_at"]

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
