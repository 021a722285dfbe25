import urllib.request
from unittest import mock

import pytest
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.db import DatabaseError
from django.http import FileResponse
from django.test import Client
from django.urls import reverse

from files import services
from files.models import TabloFile
from files.uploads import MAX_FILES_PER_UPLOAD, MULTIPART_OVERHEAD_BYTES
from tests.support.web import upload

pytestmark = pytest.mark.django_db


def post_upload(client, tablo, name, content, content_type="text/plain"):
    return client.post(
        reverse("tablos:upload", args=[tablo.id]),
        {"file": upload(name, content, content_type)},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_upload_lists_and_downloads(storage, client_ann, tablo):
    response = post_upload(client_ann, tablo, "notes.txt", b"hello tablo")

    assert response.status_code == 200
    assert messages_of(response) == ["“notes.txt” uploaded."]
    tablo_file = TabloFile.objects.get()
    assert storage.keys() == {f"tablos/{tablo.id}/{tablo_file.id}/notes.txt"}
    page = client_ann.get(reverse("tablos:detail", args=[tablo.id]))
    assert reverse("files:download", args=[tablo_file.id]) in page.content.decode()
    assert "notes.txt" in page.content.decode()

    download = client_ann.get(reverse("files:download", args=[tablo_file.id]))
    assert download["X-Content-Type-Options"] == "nosniff"
    if storage.kind == "local":
        assert download.status_code == 200
        assert download["Content-Disposition"] == 'attachment; filename="notes.txt"'
        assert b"".join(download.streaming_content) == b"hello tablo"
    else:
        assert download.status_code == 302
        with urllib.request.urlopen(download["Location"]) as fetched:  # noqa: S310
            assert fetched.read() == b"hello tablo"
            assert fetched.headers["Content-Disposition"] == 'attachment; filename="notes.txt"'


def test_download_of_html_is_never_inline(storage, client_ann, tablo):
    post_upload(client_ann, tablo, "page.html", b"<script>alert(1)</script>", "text/html")
    tablo_file = TabloFile.objects.get()
    download = client_ann.get(reverse("files:download", args=[tablo_file.id]))
    if storage.kind == "local":
        headers = download
    else:
        headers = urllib.request.urlopen(download["Location"]).headers  # noqa: S310
    assert headers["Content-Disposition"].startswith("attachment;")
    assert headers["Content-Type"] == "application/octet-stream"


def test_local_download_response_is_an_uncached_attachment(local_storage, client_ann, tablo):
    tablo_file = services.file_upload(
        tablo=tablo, uploaded=upload("page.html", b"<h1>x</h1>", "text/html")
    )
    response = client_ann.get(reverse("files:download", args=[tablo_file.id]))
    assert isinstance(response, FileResponse)
    assert response["Content-Disposition"] == 'attachment; filename="page.html"'
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    assert b"".join(response.streaming_content) == b"<h1>x</h1>"


def test_s3_download_redirect_is_not_cached(s3_storage, client_ann, tablo, settings):
    settings.FILE_DOWNLOAD_EXPIRY_SECONDS = 123
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("a.pdf", b"%PDF-1"))
    response = client_ann.get(reverse("files:download", args=[tablo_file.id]))
    assert response.status_code == 302
    assert "X-Amz-Expires=123" in response["Location"]
    assert response["Cache-Control"] == "private, no-store"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_delete_file(storage, client_ann, tablo):
    post_upload(client_ann, tablo, "a.txt", b"data")
    tablo_file = TabloFile.objects.get()

    response = client_ann.post(reverse("files:delete", args=[tablo_file.id]), follow=True)

    assert messages_of(response) == ["“a.txt” deleted."]
    assert response.redirect_chain[-1][0] == reverse("tablos:detail", args=[tablo.id])
    assert not TabloFile.objects.exists()
    assert storage.keys() == set()


def test_empty_upload_is_rejected_and_stores_nothing(storage, client_ann, tablo):
    response = post_upload(client_ann, tablo, "empty.txt", b"")
    assert messages_of(response) == ["“empty.txt” is empty: nothing was stored."]
    assert not TabloFile.objects.exists()
    assert storage.keys() == set()


def test_missing_file_is_a_clear_message(client_ann, tablo):
    response = client_ann.post(reverse("tablos:upload", args=[tablo.id]), {}, follow=True)
    assert messages_of(response) == ["Choose a file to upload."]


class RecordingUploadHandler(TemporaryFileUploadHandler):
    """The handler that stores bytes; records how many reached it."""

    received: list[int] = []

    def receive_data_chunk(self, raw_data, start):
        RecordingUploadHandler.received.append(len(raw_data))
        return super().receive_data_chunk(raw_data, start)


def test_oversized_upload_is_stopped_while_streaming(storage, client_ann, tablo, settings):
    settings.FILE_UPLOAD_MAX_BYTES = 100 * 1024
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}.RecordingUploadHandler"]
    RecordingUploadHandler.received.clear()

    # Within the multipart allowance, so the body is parsed and the handler decides.
    response = post_upload(client_ann, tablo, "big.bin", b"x" * (150 * 1024))

    assert messages_of(response) == [
        "“big.bin” was not uploaded: files may be at most 100.0\xa0KB. Nothing was stored."
    ]
    # The storing handler saw at most the limit, not the 150 KiB file.
    assert 0 < sum(RecordingUploadHandler.received) <= 100 * 1024
    assert not TabloFile.objects.exists()
    assert storage.keys() == set()


def test_declared_oversized_body_is_refused_before_reading(storage, client_ann, tablo, settings):
    settings.FILE_UPLOAD_MAX_BYTES = 100 * 1024
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}.RecordingUploadHandler"]
    RecordingUploadHandler.received.clear()

    # Larger than MAX_FILES_PER_UPLOAD files of the limit could ever be.
    huge = MAX_FILES_PER_UPLOAD * 100 * 1024 + MULTIPART_OVERHEAD_BYTES + 1
    response = post_upload(client_ann, tablo, "huge.bin", b"x" * huge)

    assert messages_of(response) == [
        f"Nothing was uploaded: send at most {MAX_FILES_PER_UPLOAD} files of up to "
        "100.0\xa0KB each at a time. Nothing was stored."
    ]
    assert RecordingUploadHandler.received == []
    assert not TabloFile.objects.exists()
    assert storage.keys() == set()


def test_upload_of_exactly_the_limit_is_accepted(local_storage, client_ann, tablo, settings):
    settings.FILE_UPLOAD_MAX_BYTES = 100 * 1024
    response = post_upload(client_ann, tablo, "fits.bin", b"x" * (100 * 1024))
    assert messages_of(response) == ["“fits.bin” uploaded."]
    assert TabloFile.objects.get().size_bytes == 100 * 1024


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/var/www/index.html", "index.html"),
        ("\uff0e\uff0e\uff0fsecret.txt", "secret.txt"),
        ("what?*.txt", "what__.txt"),
        ("ünïcödé 😀.txt", "ünïcödé 😀.txt"),
    ],
)
def test_hostile_names_stay_inside_the_files_prefix(storage, client_ann, tablo, sent, stored):
    post_upload(client_ann, tablo, sent, b"payload")
    tablo_file = TabloFile.objects.get()
    assert tablo_file.storage_key == f"tablos/{tablo.id}/{tablo_file.id}/{stored}"
    assert storage.keys() == {tablo_file.storage_key}


def test_long_name_is_truncated_keeping_the_extension(storage, client_ann, tablo):
    post_upload(client_ann, tablo, "ж" * 200 + ".docx", b"payload")
    tablo_file = TabloFile.objects.get()
    name = tablo_file.storage_key.rsplit("/", 1)[1]
    assert name == "ж" * 125 + ".docx"  # (255 - 5) // 2 whole characters
    assert storage.keys() == {tablo_file.storage_key}


def test_upload_needs_the_csrf_token(local_storage, ann, tablo):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ann)
    url = reverse("tablos:upload", args=[tablo.id])

    refused = client.post(url, {"file": upload("a.txt", b"data")})
    assert refused.status_code == 403
    assert not TabloFile.objects.exists()
    assert local_storage.keys() == set()

    client.get(reverse("tablos:detail", args=[tablo.id]))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(url, {"file": upload("a.txt", b"data"), "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert TabloFile.objects.count() == 1


def test_upload_by_get_is_refused(client_ann, tablo):
    assert client_ann.get(reverse("tablos:upload", args=[tablo.id])).status_code == 405


def test_get_on_delete_only_asks(storage, client_ann, tablo):
    post_upload(client_ann, tablo, "a.txt", b"data")
    tablo_file = TabloFile.objects.get()

    response = client_ann.get(reverse("files:delete", args=[tablo_file.id]))

    assert response.status_code == 200
    assert "Delete “a.txt”?" in response.content.decode()
    assert TabloFile.objects.filter(id=tablo_file.id).exists()
    assert storage.keys() == {tablo_file.storage_key}


def test_files_of_a_deleted_tablo_are_not_served(local_storage, client_ann, tablo):
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    tablo.delete()  # the row stays for the purge job
    assert client_ann.get(reverse("files:download", args=[tablo_file.id])).status_code == 404


def test_row_write_failure_shows_an_error_and_keeps_nothing(storage, client_ann, tablo):
    with mock.patch.object(TabloFile.objects, "create", side_effect=DatabaseError("boom")):
        response = post_upload(client_ann, tablo, "a.txt", b"data")
    assert messages_of(response) == [
        "“a.txt” could not be stored because of a server problem. "
        "Nothing was kept of it; please try again."
    ]
    assert not TabloFile.objects.exists()
    assert storage.keys() == set()


def test_download_of_a_missing_local_object_is_404(local_storage, client_ann, tablo):
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    local_storage.storage.delete(tablo_file.storage_key)
    assert client_ann.get(reverse("files:download", args=[tablo_file.id])).status_code == 404


def test_the_delete_button_on_the_tablo_page_asks_first(storage, client_ann, tablo):
    tablo_file = services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    page = client_ann.get(reverse("tablos:detail", args=[tablo.id])).content.decode()
    delete_url = reverse("files:delete", args=[tablo_file.id])
    # A link to the confirmation page, not a form that deletes on click.
    assert f'<a href="{delete_url}"' in page
    assert f'action="{delete_url}"' not in page
    confirm = client_ann.get(delete_url)
    assert "Delete “a.txt”?" in confirm.content.decode()
    assert TabloFile.objects.filter(id=tablo_file.id).exists()
