import pytest
from django.core.files.uploadhandler import SkipFile
from django.test import RequestFactory

from files.uploads import (
    MULTIPART_OVERHEAD_BYTES,
    MaxSizeUploadHandler,
    install_size_limit,
    request_too_large,
)


def started(max_bytes: int, content_length: int | None = None) -> MaxSizeUploadHandler:
    handler = MaxSizeUploadHandler(None, max_bytes=max_bytes)
    handler.new_file("file", "a.bin", "application/octet-stream", content_length)
    return handler


def test_chunks_up_to_the_limit_pass_through():
    handler = started(10)
    assert handler.receive_data_chunk(b"x" * 6, 0) == b"x" * 6
    assert handler.receive_data_chunk(b"x" * 4, 6) == b"x" * 4
    assert handler.rejected == []


def test_the_chunk_crossing_the_limit_skips_the_file():
    handler = started(10)
    handler.receive_data_chunk(b"x" * 6, 0)
    with pytest.raises(SkipFile):
        handler.receive_data_chunk(b"x" * 5, 6)
    assert [(r.file_name, r.received_bytes) for r in handler.rejected] == [("a.bin", 11)]


def test_a_declared_part_length_over_the_limit_skips_its_first_chunk():
    handler = MaxSizeUploadHandler(None, max_bytes=10)
    handler.new_file("file", "a.bin", "text/plain", 11)
    with pytest.raises(SkipFile):
        handler.receive_data_chunk(b"x", 0)
    assert handler.rejected[0].received_bytes == 11


def test_files_past_the_count_are_skipped_and_the_next_request_part_is_judged_afresh():
    handler = MaxSizeUploadHandler(None, max_bytes=10, max_files=1)
    handler.new_file("file", "a.bin", "text/plain", None)
    assert handler.receive_data_chunk(b"x", 0) == b"x"
    handler.new_file("file", "b.bin", "text/plain", None)
    with pytest.raises(SkipFile):
        handler.receive_data_chunk(b"x", 0)
    assert [(r.file_name, r.reason) for r in handler.rejected] == [("b.bin", "too_many")]


def test_installed_first_in_the_request_handlers():
    request = RequestFactory().post("/")
    handler = install_size_limit(request, max_bytes=5)
    assert request.upload_handlers[0] is handler
    assert len(request.upload_handlers) > 1  # Django's storing handlers stay after it


@pytest.mark.parametrize(
    ("content_length", "too_large"),
    [
        ("", False),
        ("nonsense", False),
        (str(300 + MULTIPART_OVERHEAD_BYTES), False),
        (str(301 + MULTIPART_OVERHEAD_BYTES), True),
    ],
)
def test_request_too_large_reads_the_declared_length(content_length, too_large):
    request = RequestFactory().post("/")
    request.META["CONTENT_LENGTH"] = content_length
    assert request_too_large(request, max_bytes=100, max_files=3) is too_large
