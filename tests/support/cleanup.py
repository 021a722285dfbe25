"""Helpers for the file cleanup tests (tests/files/test_cleanup*.py, test_tasks.py)."""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage

from files.models import TabloFile
from tablos.models import Tablo


def make_tablo(name: str = "board") -> Tablo:
    # No password: hashing one costs most of a second per user.
    owner = get_user_model().objects.create(username=f"user-{uuid.uuid4().hex[:10]}")
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


def refuse_s3_deletes(storage: Storage, refused: set[str]) -> None:
    """Make the S3 endpoint answer DeleteObjects with AccessDenied for ``refused`` keys.

    moto never refuses a key in DeleteObjects outside object-lock versions, so
    the refused keys are taken out of the real request (they stay on the server)
    and reported back exactly as S3 reports a per-key refusal. Each request must
    keep at least one key (S3 rejects an empty DeleteObjects).
    """
    client = storage.connection.meta.client  # type: ignore[attr-defined]
    held: list[str] = []

    def drop_refused(params, **_):
        objects = params["Delete"]["Objects"]
        held[:] = [o["Key"] for o in objects if o["Key"] in refused]
        params["Delete"]["Objects"] = [o for o in objects if o["Key"] not in refused]

    def add_errors(parsed, **_):
        parsed.setdefault("Errors", []).extend(
            {"Key": key, "Code": "AccessDenied", "Message": "Access Denied"} for key in held
        )

    client.meta.events.register("before-parameter-build.s3.DeleteObjects", drop_refused)
    client.meta.events.register("after-call.s3.DeleteObjects", add_errors)


def refuse(storage, monkeypatch, refused: set[str]) -> None:
    """Make deletes of the ``refused`` names fail, on either kind of StorageContext."""
    if storage.kind == "s3":
        refuse_s3_deletes(storage.storage, refused)
        return
    real_delete = FileSystemStorage.delete

    def delete(self, name):
        if name in refused:
            raise PermissionError(13, "Permission denied", name)
        return real_delete(self, name)

    # Tests run as root, so file permissions cannot make the real delete refuse.
    monkeypatch.setattr(FileSystemStorage, "delete", delete)
