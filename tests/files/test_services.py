import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from django.db import DatabaseError, IntegrityError

from files import cleanup, services
from files.models import TabloFile
from files.uploads import RejectedUpload
from tests.support.web import make_tablo, make_user, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def tablo():
    return make_tablo(make_user("ann"))


def test_upload_stores_object_then_row(storage, tablo):
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("notes.txt", b"hello"))

    assert tablo_file.storage_key == f"tablos/{tablo.id}/{tablo_file.id}/notes.txt"
    assert storage.keys() == {tablo_file.storage_key}
    with storage.storage.open(tablo_file.storage_key, "rb") as fh:
        assert fh.read() == b"hello"
    row = TabloFile.objects.get()
    assert (row.tablo_id, row.original_name, row.size_bytes, row.content_type) == (
        tablo.id,
        "notes.txt",
        5,
        "text/plain",
    )


def test_row_write_failure_deletes_the_object(storage, tablo):
    with (
        mock.patch.object(TabloFile.objects, "create", side_effect=DatabaseError("disk full")),
        pytest.raises(DatabaseError),
    ):
        services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))

    assert storage.keys() == set()
    assert not TabloFile.objects.exists()


def test_empty_file_is_rejected_and_nothing_stored(storage, tablo):
    with pytest.raises(services.FileRejected, match=r"“empty\.txt” is empty"):
        services.file_upload(tablo=tablo, uploaded=upload("empty.txt", b""))
    assert storage.keys() == set()
    assert not TabloFile.objects.exists()


def test_oversized_file_is_rejected_and_nothing_stored(storage, tablo, settings):
    settings.FILE_UPLOAD_MAX_BYTES = 10
    with pytest.raises(services.FileRejected, match="at most 10"):
        services.file_upload(tablo=tablo, uploaded=upload("big.bin", b"x" * 11))
    assert storage.keys() == set()
    assert not TabloFile.objects.exists()


def test_file_of_exactly_the_limit_is_accepted(storage, tablo, settings):
    settings.FILE_UPLOAD_MAX_BYTES = 10
    services.file_upload(tablo=tablo, uploaded=upload("ten.bin", b"x" * 10))
    assert TabloFile.objects.get().size_bytes == 10


def test_delete_removes_object_then_row(storage, tablo):
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    services.file_delete(tablo_file=tablo_file)
    assert storage.keys() == set()
    assert not TabloFile.objects.exists()


def test_failed_object_delete_keeps_the_row(storage, tablo):
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    broken = mock.Mock(delete=mock.Mock(side_effect=OSError("storage down")))
    with pytest.raises(OSError, match="storage down"):
        services.file_delete(tablo_file=tablo_file, storage=broken)
    assert TabloFile.objects.filter(id=tablo_file.id).exists()


@pytest.mark.parametrize(
    ("declared", "served"),
    [
        ("text/html", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/xhtml+xml", "application/octet-stream"),
        ("text/javascript", "application/octet-stream"),
        ("image/png", "image/png"),
    ],
)
def test_active_content_types_are_served_as_opaque_bytes(declared, served):
    assert services.download_content_type(TabloFile(content_type=declared)) == served


def test_local_download_streams_the_opened_file_as_opaque_bytes(local_storage, tablo):
    tablo_file = services.file_upload(
        tablo=tablo, uploaded=upload("page.html", b"<h1>x</h1>", "text/html")
    )
    download = services.file_download(tablo_file=tablo_file)
    assert isinstance(download, services.DownloadStream)
    assert (download.filename, download.content_type) == ("page.html", "application/octet-stream")
    with download.file as fh:
        assert fh.read() == b"<h1>x</h1>"


def test_local_download_of_a_missing_object_raises(local_storage, tablo):
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    local_storage.storage.delete(tablo_file.storage_key)
    with pytest.raises(FileNotFoundError):
        services.file_download(tablo_file=tablo_file)


def test_s3_download_is_a_presigned_attachment_url(s3_storage, tablo, settings):
    settings.FILE_DOWNLOAD_EXPIRY_SECONDS = 123
    tablo_file = services.file_upload(
        tablo=tablo, uploaded=upload("Résumé 2026.pdf", b"%PDF-1", "application/pdf")
    )
    download = services.file_download(tablo_file=tablo_file)
    assert isinstance(download, services.DownloadRedirect)
    url = download.url
    assert "X-Amz-Expires=123" in url
    assert "response-content-disposition=attachment" in url
    with urllib.request.urlopen(url) as fetched:  # noqa: S310 (our moto endpoint)
        assert fetched.read() == b"%PDF-1"
        assert fetched.headers["Content-Disposition"] == (
            "attachment; filename*=utf-8''R%C3%A9sum%C3%A9%202026.pdf"
        )
        assert fetched.headers["Content-Type"] == "application/pdf"


def test_real_integrity_error_deletes_the_object(storage, tablo):
    """A genuine database refusal (duplicate primary key), not a mock."""
    taken = services.file_upload(tablo=tablo, uploaded=upload("first.txt", b"1"))
    with (
        mock.patch("files.services.uuid.uuid4", return_value=taken.id),
        pytest.raises(IntegrityError),
    ):
        services.file_upload(tablo=tablo, uploaded=upload("second.txt", b"2"))

    assert storage.keys() == {taken.storage_key}
    assert list(TabloFile.objects.values_list("id", flat=True)) == [taken.id]


def _directories(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


def test_local_delete_removes_the_upload_directory_and_keeps_the_tablos(local_storage, tablo):
    root = Path(local_storage.storage.location)
    first = services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    second = services.file_upload(tablo=tablo, uploaded=upload("b.txt", b"data"))
    services.file_delete(tablo_file=first)
    assert _directories(root) == {"tablos", f"tablos/{tablo.id}", f"tablos/{tablo.id}/{second.id}"}
    services.file_delete(tablo_file=second)
    # The tablo lives on: its directory stays for the next upload.
    assert _directories(root) == {"tablos", f"tablos/{tablo.id}"}


def test_local_purge_leaves_no_empty_directories(local_storage, tablo):
    root = Path(local_storage.storage.location)
    for name in ("a.txt", "b.txt", "c.txt"):
        services.file_upload(tablo=tablo, uploaded=upload(name, b"data"))
    tablo_id = tablo.id
    tablo.delete()
    cleanup.purge_tablo_files(tablo_id=tablo_id, batch_size=2).raise_for_errors("purge")
    assert _directories(root) == {"tablos"}


def test_files_upload_reports_refused_and_bad_files_and_keeps_the_good(storage, tablo, settings):
    settings.FILE_UPLOAD_MAX_BYTES = 10
    refused = [
        RejectedUpload(field_name="file", file_name="big.bin", received_bytes=11),
        RejectedUpload(field_name="file", file_name="x.txt", received_bytes=0, reason="too_many"),
    ]
    outcome = services.files_upload(
        tablo=tablo,
        uploads=[upload("a.txt", b"alpha"), upload("empty.txt", b""), upload("b.txt", b"bravo")],
        refused=refused,
    )

    assert [f.original_name for f in outcome.stored] == ["a.txt", "b.txt"]
    assert outcome.errors == [
        "“big.bin” was not uploaded: files may be at most 10\xa0bytes. Nothing was stored.",
        "“x.txt” was not uploaded: at most 20 files can be sent at once. Send it again on its own.",
        "“empty.txt” is empty: nothing was stored.",
    ]
    assert storage.keys() == {f.storage_key for f in outcome.stored}
