"""Reads of tablos, always scoped to the user who asks."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User
from django.db.models import QuerySet

from tablos.models import Tablo


def tablo_list(*, user: User) -> QuerySet[Tablo]:
    """The user's tablos, newest first (index ``tablos_owner_created_idx``)."""
    return Tablo.objects.filter(owner=user).order_by("-created_at")


def tablo_get_for_user(*, user: User, tablo_id: uuid.UUID) -> Tablo | None:
    """The tablo, or None when it does not exist *or belongs to someone else*:
    callers must treat the two alike so ids cannot be probed."""
    return Tablo.objects.filter(id=tablo_id, owner=user).first()
