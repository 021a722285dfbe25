"""Writes of files: upload, download, delete.

Ordering rules (shared with the cleanup jobs): on upload the object is written
first and the row second, and if the row cannot be written the object is
deleted again; on delete the object goes first and the row second. A crash
between the two steps therefore leaves at worst an object without a row,
which the orphan cleanup removes, never a row pointing at nothing.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog
from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import Storage, default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django.utils.http import content_disposition_header

from config.errors import DATABASE_OUTAGE
from files import naming, storage_ops
from files.models import TabloFile
from files.uploads import MAX_FILES_PER_UPLOAD, RejectedUpload
from tablos.models import Tablo

logger = structlog.get_logger(__name__)

GENERIC_CONTENT_TYPE = "application/octet-stream"


class FileRejected(ValueError):
    """The upload was refused; the message is meant for the user. Nothing was stored."""


def size_limit_message(*, name: str | None, max_bytes: int) -> str:
    subject = f"“{naming.display_name(name)}”" if name is not None else "The file"
    return (
        f"{subject} was not uploaded: files may be at most "
        f"{filesizeformat(max_bytes)}. Nothing was stored."
    )


def too_many_message(*, name: str, max_files: int = MAX_FILES_PER_UPLOAD) -> str:
    return (
        f"“{naming.display_name(name)}” was not uploaded: at most {max_files} files "
        "can be sent at once. Send it again on its own."
    )


def request_too_large_message(*, max_bytes: int, max_files: int = MAX_FILES_PER_UPLOAD) -> str:
    return (
        f"Nothing was uploaded: send at most {max_files} files of up to "
        f"{filesizeformat(max_bytes)} each at a time. Nothing was stored."
    )


def server_problem_message(*, name: str) -> str:
    return (
        f"“{naming.display_name(name)}” could not be stored because of a server problem. "
        "Nothing was kept of it; please try again."
    )


def _content_type(uploaded: UploadedFile, name: str) -> str:
    declared = (uploaded.content_type or "").split(";")[0].strip().lower()
    if declared and "/" in declared and len(declared) <= 255 and declared.isascii():
        return declared
    return mimetypes.guess_type(name)[0] or GENERIC_CONTENT_TYPE


def file_upload(
    *, tablo: Tablo, uploaded: UploadedFile, storage: Storage | None = None
) -> TabloFile:
    """Store ``uploaded`` in ``tablo``: the object first, then the row.

    The caller has checked that the user owns ``tablo``. Raises FileRejected
    for an empty or oversized file (nothing stored).
    """
    storage = storage or default_storage
    name = naming.display_name(uploaded.name or "")
    max_bytes = settings.FILE_UPLOAD_MAX_BYTES
    if uploaded.size is None or uploaded.size == 0:
        raise FileRejected(f"“{name}” is empty: nothing was stored.")
    if uploaded.size > max_bytes:
        raise FileRejected(size_limit_message(name=name, max_bytes=max_bytes))

    file_id = uuid.uuid4()
    key = naming.storage_key(tablo_id=tablo.id, file_id=file_id, original_name=name)
    saved_key = storage.save(key, uploaded)
    try:
        if saved_key != key:  # a storage that renames would break the key <-> row link
            raise RuntimeError(f"storage saved {key!r} as {saved_key!r}")
        with transaction.atomic():
            tablo_file = TabloFile.objects.create(
                id=file_id,
                tablo_id=tablo.id,
                storage_key=key,
                original_name=name,
                content_type=_content_type(uploaded, name),
                size_bytes=uploaded.size,
            )
    except BaseException:
        # Without a row nothing would ever find this object again (until the
        # orphan cleanup): remove it now, then let the error propagate.
        try:
            storage.delete(saved_key)
            storage_ops.remove_empty_parents(storage=storage, name=saved_key, levels=1)
        except Exception:
            logger.exception("upload rollback failed", storage_key=saved_key)
        raise
    logger.info("file uploaded", tablo_id=str(tablo.id), file_id=str(file_id), size=uploaded.size)
    return tablo_file


@dataclass(frozen=True, kw_only=True)
class UploadOutcome:
    """What became of the files of one upload: the rows stored, and one message
    for the user per file that was refused or failed (nothing of it kept)."""

    stored: list[TabloFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def files_upload(
    *,
    tablo: Tablo,
    uploads: Sequence[UploadedFile],
    refused: Sequence[RejectedUpload] = (),
    storage: Storage | None = None,
) -> UploadOutcome:
    """Store each of ``uploads`` in ``tablo`` with ``file_upload``, independently.

    ``refused`` are the files the streaming checks already skipped (too large,
    too many); they only get their message. A file that is refused or fails
    does not stop the others, and what was stored stays stored. A database
    outage propagates: the rows of the next files could not be written either.
    """
    max_bytes = settings.FILE_UPLOAD_MAX_BYTES
    outcome = UploadOutcome()
    for rejected in refused:
        if rejected.reason == "too_many":
            outcome.errors.append(too_many_message(name=rejected.file_name))
        else:
            outcome.errors.append(size_limit_message(name=rejected.file_name, max_bytes=max_bytes))
    for uploaded in uploads:
        try:
            outcome.stored.append(file_upload(tablo=tablo, uploaded=uploaded, storage=storage))
        except FileRejected as exc:
            outcome.errors.append(str(exc))
        except DATABASE_OUTAGE:
            raise
        except Exception:
            # file_upload already removed whatever it stored of this file.
            logger.exception("upload failed", tablo_id=str(tablo.id))
            outcome.errors.append(server_problem_message(name=uploaded.name or ""))
    return outcome


def file_delete(*, tablo_file: TabloFile, storage: Storage | None = None) -> None:
    """Delete the object, then the row (a failed object delete keeps the row)."""
    storage = storage or default_storage
    file_id = tablo_file.id  # Model.delete() clears the pk on the instance
    storage.delete(tablo_file.storage_key)
    storage_ops.remove_empty_parents(storage=storage, name=tablo_file.storage_key, levels=1)
    tablo_file.delete()
    logger.info("file deleted", file_id=str(file_id), tablo_id=str(tablo_file.tablo_id))


# Types a browser would render or run even from a download URL opened in a tab;
# served as opaque bytes. The Content-Disposition is always "attachment" anyway.
_ACTIVE_TYPES = ("html", "xml", "javascript", "ecmascript", "svg", "xhtml")


def download_content_type(tablo_file: TabloFile) -> str:
    content_type = tablo_file.content_type or GENERIC_CONTENT_TYPE
    if any(marker in content_type for marker in _ACTIVE_TYPES):
        return GENERIC_CONTENT_TYPE
    return content_type


@dataclass(frozen=True, kw_only=True)
class DownloadRedirect:
    """Send the browser to ``url``, where the storage itself serves the attachment."""

    url: str


@dataclass(frozen=True, kw_only=True)
class DownloadStream:
    """Stream ``file`` (open, binary) named ``filename``, as an attachment unless ``inline``."""

    file: File
    filename: str
    content_type: str
    inline: bool = False


Download = DownloadRedirect | DownloadStream


# What a browser shows safely inline: raster images in <img>, PDFs in its own viewer.
# Nothing that can run a script (SVG, HTML): those are downloads only.
PREVIEW_KINDS = {
    "image/png": "image",
    "image/jpeg": "image",
    "image/gif": "image",
    "image/webp": "image",
    "image/avif": "image",
    "application/pdf": "pdf",
}


class NoPreview(ValueError):
    """The file's type is not one the browser may show inline."""


def preview_kind(tablo_file: TabloFile) -> str | None:
    """``"image"``, ``"pdf"``, or None when the file has no preview."""
    return PREVIEW_KINDS.get(tablo_file.content_type)


def download_origin(*, storage: Storage | None = None) -> str | None:
    """The ``scheme://host[:port]`` S3 serves downloads from (the bucket's endpoint);
    None on local storage, where this site serves them itself."""
    storage = storage or default_storage
    if not storage_ops.is_s3(storage):
        return None
    # Presigning is local (no request); every key of the bucket has the same origin.
    parts = urlsplit(storage.url("origin"))
    return f"{parts.scheme}://{parts.netloc}"


def file_download(
    *, tablo_file: TabloFile, storage: Storage | None = None, inline: bool = False
) -> Download:
    """How to send the file: as an attachment, or ``inline`` for a preview.

    S3: a presigned GET URL (valid FILE_DOWNLOAD_EXPIRY_SECONDS) that makes S3
    itself answer with the Content-Disposition and the original name, so the
    bytes never pass through the web process.
    Local storage: the opened file, to stream (FileNotFoundError if it is gone).
    Inline only for the PREVIEW_KINDS types (NoPreview otherwise).
    """
    storage = storage or default_storage
    if inline and preview_kind(tablo_file) is None:
        raise NoPreview(tablo_file.content_type)
    content_type = download_content_type(tablo_file)
    if storage_ops.is_s3(storage):
        url = storage.url(  # type: ignore[call-arg]  # S3Storage.url's presigning options
            tablo_file.storage_key,
            parameters={
                "ResponseContentDisposition": content_disposition_header(
                    as_attachment=not inline, filename=tablo_file.original_name
                ),
                "ResponseContentType": content_type,
            },
            expire=settings.FILE_DOWNLOAD_EXPIRY_SECONDS,
        )
        return DownloadRedirect(url=url)
    return DownloadStream(
        file=storage.open(tablo_file.storage_key, "rb"),
        filename=tablo_file.original_name,
        content_type=content_type,
        inline=inline,
    )
