"""Reads of files, always scoped to the user who asks."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User
from django.db.models import QuerySet

from files.models import TabloFile
from tablos.models import Tablo


def tablo_files(*, tablo: Tablo) -> QuerySet[TabloFile]:
    return TabloFile.objects.filter(tablo_id=tablo.id).order_by("-created_at")


def file_get_for_user(*, user: User, file_id: uuid.UUID) -> TabloFile | None:
    """The file, or None when it is missing, someone else's, or its tablo is
    deleted (its rows wait for the purge job and must not be served)."""
    owned_tablos = Tablo.objects.filter(owner=user).values("id")
    return TabloFile.objects.filter(id=file_id, tablo_id__in=owned_tablos).first()
