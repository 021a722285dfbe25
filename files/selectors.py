"""Reads of files, always scoped to the user who asks."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db.models import BigIntegerField, CharField, F, QuerySet, Value

from files.models import TabloFile
from tablos.models import Tablo


def tablo_files(*, tablo: Tablo) -> QuerySet[TabloFile]:
    return TabloFile.objects.filter(tablo_id=tablo.id).order_by("-created_at")


def file_get_for_user(*, user: User, file_id: uuid.UUID) -> TabloFile | None:
    """The file, or None when it is missing, someone else's, or its tablo is
    deleted (its rows wait for the purge job and must not be served)."""
    owned_tablos = Tablo.objects.filter(owner=user).values("id")
    return TabloFile.objects.filter(id=file_id, tablo_id__in=owned_tablos).first()


def search(*, user: User, query: str) -> QuerySet[Any]:
    """The user's tablos and files whose name contains ``query`` (any case), newest
    first, as dicts: kind ("tablo"/"file"), id, label (the name), tablo (its id),
    type (content type, "" for a tablo), size (None for a tablo), created_at.

    Never another user's, never a file of a deleted tablo. On PostgreSQL the
    ``*_name_trgm_idx`` indexes serve the name match."""
    owned = Tablo.objects.filter(owner=user)
    # Both sides list the same columns in the same order (a UNION matches by position).
    # No ORDER BY inside (the models' default ordering): only the union is ordered.
    tablos = (
        owned.filter(name__icontains=query)
        .order_by()
        .values(
            "id",
            "created_at",
            label=F("name"),
            kind=Value("tablo", output_field=CharField()),
            tablo=F("id"),
            type=Value("", output_field=CharField()),
            size=Value(None, output_field=BigIntegerField()),
        )
    )
    files = (
        TabloFile.objects.filter(tablo_id__in=owned.values("id"), original_name__icontains=query)
        .order_by()
        .values(
            "id",
            "created_at",
            label=F("original_name"),
            kind=Value("file", output_field=CharField()),
            tablo=F("tablo_id"),
            type=F("content_type"),
            size=F("size_bytes"),
        )
    )
    return tablos.union(files, all=True).order_by("-created_at", "id")


def tablo_names(*, user: User, tablo_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Names of the user's tablos among ``tablo_ids`` (for a page of search results)."""
    rows = Tablo.objects.filter(owner=user, id__in=tablo_ids).values_list("id", "name")
    return dict(rows)
