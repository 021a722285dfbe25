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
from typing import Any, Literal

from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest

# One form post may carry this many files; the ones after it are skipped unread.
MAX_FILES_PER_UPLOAD = 20


@dataclass(frozen=True)
class RejectedUpload:
    field_name: str
    file_name: str
    received_bytes: int
    reason: Literal["too_large", "too_many"] = "too_large"


class MaxSizeUploadHandler(FileUploadHandler):
    def __init__(
        self,
        request: HttpRequest | None = None,
        *,
        max_bytes: int,
        max_files: int = MAX_FILES_PER_UPLOAD,
    ) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.files_seen = 0
        self.rejected: list[RejectedUpload] = []
        self._refuse: tuple[int, Literal["too_large", "too_many"]] | None = None

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
        self.files_seen += 1
        # Refused on the first chunk, not here: SkipFile raised from new_file
        # makes Django close the storing handler's file, which is then still
        # the previous, already accepted file of the same request.
        self._refuse = None
        if self.files_seen > self.max_files:
            self._refuse = (0, "too_many")
        elif content_length is not None and content_length > self.max_bytes:
            # A declared per-part length is a client's claim, but when it
            # already says "too large" no byte of it needs to be kept.
            self._refuse = (content_length, "too_large")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if self._refuse is not None:
            received, reason = self._refuse
            self._reject(received, reason=reason)
        if start + len(raw_data) > self.max_bytes:
            self._reject(start + len(raw_data))
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the UploadedFile

    def _reject(
        self, received: int, *, reason: Literal["too_large", "too_many"] = "too_large"
    ) -> None:
        self.rejected.append(
            RejectedUpload(
                field_name=self.field_name,
                file_name=self.file_name or "",
                received_bytes=received,
                reason=reason,
            )
        )
        raise SkipFile(f"upload refused: {reason}")


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


def request_too_large(
    request: HttpRequest, *, max_bytes: int, max_files: int = MAX_FILES_PER_UPLOAD
) -> bool:
    """True when the declared body cannot hold ``max_files`` files within the limit.

    Lets the view refuse a multi-gigabyte body before reading it; the
    streaming handler still guards bodies whose length is not declared.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return declared > max_files * max_bytes + MULTIPART_OVERHEAD_BYTES
