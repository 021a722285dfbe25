"""Helpers for the file cleanup tests (tests/files/test_cleanup*.py, test_tasks.py)."""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import Storage

from files.models import TabloFile
from tablos.models import Tablo


def make_tablo(name: str = "board") -> Tablo:
    owner = get_user_model().objects.create_user(
        username=f"user-{uuid.uuid4().hex[:10]}", password="pw-not-used-123"
    )
    return Tablo.objects.create(owner=owner, name=name)


def put_object(storage: Storage, tablo_id: uuid.UUID, filename: str = "a.txt") -> str:
    """Write an object under tablos/ the way an upload does; returns its storage name."""
    name = f"tablos/{tablo_id}/{uuid.uuid4().hex}/{filename}"
    return storage.save(name, ContentFile(b"content of " + filename.encode()))


def put_file(storage: Storage, tablo_id: uuid.UUID, filename: str = "a.txt") -> TabloFile:
    """An object and its row (what a finished upload leaves behind)."""
    key = put_object(storage, tablo_id, filename)
    return TabloFile.objects.create(
        tablo_id=tablo_id,
        storage_key=key,
        original_name=filename,
        content_type="text/plain",
        size_bytes=len(filename) + 11,
    )
