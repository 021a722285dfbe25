"""Enforce the upload size limit while the request body streams in.

Checking ``UploadedFile.size`` in the view is too late: by then Django has
written the whole body to a temporary file. ``MaxSizeUploadHandler`` runs first
in ``request.upload_handlers`` and counts every chunk before the storing
handlers see it; past the limit it raises ``SkipFile``, so the parser closes
(and deletes) the partial temporary file and discards the rest of that file's
bytes. The other form fields (the CSRF token) are still parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest


@dataclass(frozen=True)
class RejectedUpload:
    field_name: str
    file_name: str
    received_bytes: int


class MaxSizeUploadHandler(FileUploadHandler):
    def __init__(self, request: HttpRequest | None = None, *, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.rejected: list[RejectedUpload] = []

    def new_file(
        self,
        field_name: str,
        file_name: str,
        content_type: str,
        content_length: int | None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().new_file(field_name, file_name, content_type, content_length, *args, **kwargs)
        # A declared per-part length is a client's claim, but when it already
        # says "too large" there is no point in reading a single chunk.
        if content_length is not None and content_length > self.max_bytes:
            self._reject(content_length)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.max_bytes:
            self._reject(start + len(raw_data))
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the UploadedFile

    def _reject(self, received: int) -> None:
        self.rejected.append(
            RejectedUpload(
                field_name=self.field_name, file_name=self.file_name or "", received_bytes=received
            )
        )
        raise SkipFile(f"upload larger than {self.max_bytes} bytes")


def install_size_limit(request: HttpRequest, *, max_bytes: int) -> MaxSizeUploadHandler:
    """Put the size check in front of the request's upload handlers.

    Must run before anything reads ``request.POST``/``request.FILES`` (Django
    raises otherwise), hence ``csrf_exempt`` outside and ``csrf_protect``
    inside the upload view.
    """
    handler = MaxSizeUploadHandler(request, max_bytes=max_bytes)
    request.upload_handlers.insert(0, handler)
    return handler


# Room for the multipart boundaries, part headers and the CSRF token field.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def request_too_large(request: HttpRequest, *, max_bytes: int) -> bool:
    """True when the declared body cannot hold a file within the limit.

    Lets the view refuse a multi-gigabyte body before reading it; the
    streaming handler still guards bodies whose length is not declared.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return declared > max_bytes + MULTIPART_OVERHEAD_BYTES
