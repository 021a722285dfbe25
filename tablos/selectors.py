"""Reads of tablos, always scoped to the user who asks."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from tablos.models import Tablo


def tablo_list(*, user: User) -> QuerySet[Tablo]:
    """The user's tablos, newest first (index ``tablos_owner_created_idx``)."""
    return Tablo.objects.filter(owner=user).order_by("-created_at")


def tablo_get_for_user(*, user: User, tablo_id: uuid.UUID) -> Tablo:
    """The tablo, or Http404 when it does not exist *or belongs to someone else*:
    the two cases look the same so ids cannot be probed."""
    return get_object_or_404(Tablo, id=tablo_id, owner=user)
