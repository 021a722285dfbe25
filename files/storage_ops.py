"""Batched object operations on the file storage: delete many keys, list old keys.

S3 gets one ``DeleteObjects`` request per 1000 keys (the API's limit) and a
paginated ``ListObjectsV2``; any other storage falls back to ``storage.delete()``
per key and a directory walk. Names here are storage names (what ``TabloFile``
stores), never the raw S3 keys: the storage's ``location`` prefix is applied and
stripped here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.storage import FileSystemStorage, Storage

S3_DELETE_BATCH = 1000  # DeleteObjects accepts at most 1000 keys per request.
UNCONFIRMED = "NotConfirmed: the storage did not report this object as deleted"


class StorageUnavailable(Exception):
    """The storage refused or failed a whole request (endpoint down, bad credentials)."""


@dataclass
class DeleteResult:
    deleted: list[str] = field(default_factory=list)
    # name -> reason, for each object the storage refused to delete.
    errors: dict[str, str] = field(default_factory=dict)


def is_s3(storage: Storage) -> bool:
    # Duck-typed so that subclasses and lazily wrapped storages are recognised.
    return hasattr(storage, "bucket_name") and hasattr(storage, "connection")


def _s3_key(storage: Storage, name: str) -> str:
    from storages.utils import clean_name

    return storage._normalize_name(clean_name(name))  # type: ignore[attr-defined]


def _s3_prefix(storage: Storage, prefix: str) -> str:
    location = (getattr(storage, "location", "") or "").strip("/")
    return f"{location}/{prefix}" if location else prefix


def _s3_name(storage: Storage, key: str) -> str:
    location = getattr(storage, "location", "") or ""
    if location and key.startswith(location):
        return key[len(location) :].lstrip("/")
    return key


def describe_error(exc: BaseException) -> str:
    """A short, stable reason for a failed request (groups errors in the summary)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".strip()
    if isinstance(exc, OSError) and exc.strerror:
        # Without the file name, so that the same cause on many files is one reason.
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def delete_objects(*, storage: Storage, names: Iterable[str], empty_dirs: int = 1) -> DeleteResult:
    """Delete the objects ``names``; an object that is already gone counts as deleted.

    On local storage up to ``empty_dirs`` parent directories left empty are removed
    too (see remove_empty_parents). Raises StorageUnavailable when a whole request
    fails: the caller must then treat none of the remaining names as deleted.
    """
    names = list(names)
    if is_s3(storage):
        return _s3_delete(storage, names)
    result = _generic_delete(storage, names)
    for name in result.deleted:
        remove_empty_parents(storage=storage, name=name, levels=empty_dirs)
    return result


def remove_empty_parents(*, storage: Storage, name: str, levels: int) -> None:
    """Remove up to ``levels`` directories above ``name`` that are now empty (local only).

    Each upload has its own directory (``tablos/<tablo>/<file>/``), which nobody
    else writes to: one level is always safe. The tablo's directory (two levels)
    is only safe once the tablo is gone, or it could vanish under a concurrent
    upload's ``makedirs``.
    """
    if not isinstance(storage, FileSystemStorage):
        return
    root = Path(storage.location).resolve()
    directory = Path(storage.path(name)).parent
    for _ in range(levels):
        if directory == root or root not in directory.parents:
            return
        try:
            directory.rmdir()  # only ever succeeds on an empty directory
        except OSError:
            return  # not empty, or already gone
        directory = directory.parent


def _s3_delete(storage: Storage, names: list[str]) -> DeleteResult:
    result = DeleteResult()
    client = storage.connection.meta.client  # type: ignore[attr-defined]
    bucket = storage.bucket_name  # type: ignore[attr-defined]
    for start in range(0, len(names), S3_DELETE_BATCH):
        chunk = names[start : start + S3_DELETE_BATCH]
        by_key = {_s3_key(storage, name): name for name in chunk}
        try:
            # Not quiet: success is what the response confirms in "Deleted", never
            # inferred from a missing "Errors" list (an empty 200 would delete nothing).
            response = client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in by_key], "Quiet": False},
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(describe_error(exc)) from exc
        confirmed = {entry.get("Key") for entry in response.get("Deleted", [])}
        failed: dict[str, str] = {}
        for error in response.get("Errors", []):
            key = error.get("Key", "")
            if error.get("Code") == "NoSuchKey":
                confirmed.add(key)  # already gone: that is what we wanted
                continue
            failed[key] = f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
        for key, name in by_key.items():
            if key in confirmed and key not in failed:
                result.deleted.append(name)
            else:
                result.errors[name] = failed.get(key, UNCONFIRMED)
    return result


def _generic_delete(storage: Storage, names: list[str]) -> DeleteResult:
    result = DeleteResult()
    for name in names:
        try:
            # FileSystemStorage.delete ignores a missing file already.
            storage.delete(name)
        except FileNotFoundError:
            result.deleted.append(name)
        except OSError as exc:
            result.errors[name] = describe_error(exc)
        else:
            result.deleted.append(name)
    return result


def can_list(storage: Storage) -> bool:
    return is_s3(storage) or isinstance(storage, FileSystemStorage)


def iter_old_objects(*, storage: Storage, prefix: str, older_than: datetime) -> Iterator[list[str]]:
    """Pages (lists) of object names under ``prefix`` last modified before ``older_than``.

    Paginated so that memory stays flat however many objects the storage holds.
    """
    if is_s3(storage):
        yield from _s3_old_objects(storage, prefix, older_than)
    elif isinstance(storage, FileSystemStorage):
        yield from _local_old_objects(storage, prefix, older_than)
    else:
        raise TypeError(f"listing is not supported for {type(storage).__name__}")


def _s3_old_objects(storage: Storage, prefix: str, older_than: datetime) -> Iterator[list[str]]:
    client = storage.connection.meta.client  # type: ignore[attr-defined]
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=storage.bucket_name,  # type: ignore[attr-defined]
        Prefix=_s3_prefix(storage, prefix),
        PaginationConfig={"PageSize": S3_DELETE_BATCH},
    )
    try:
        for page in pages:
            yield [
                _s3_name(storage, obj["Key"])
                for obj in page.get("Contents", [])
                if obj["LastModified"] < older_than
            ]
    except (BotoCoreError, ClientError) as exc:
        raise StorageUnavailable(describe_error(exc)) from exc


def _local_old_objects(
    storage: FileSystemStorage, prefix: str, older_than: datetime, page_size: int = 1000
) -> Iterator[list[str]]:
    root = Path(storage.location)
    base = root / prefix
    if not base.is_dir():
        return
    cutoff = older_than.astimezone(UTC).timestamp()
    page: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(base):
        for filename in filenames:
            path = Path(dirpath) / filename
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue  # deleted while we walked
            if mtime < cutoff:
                page.append(path.relative_to(root).as_posix())
                if len(page) >= page_size:
                    yield page
                    page = []
    if page:
        yield page
