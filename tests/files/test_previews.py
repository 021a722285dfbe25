"""Image and PDF previews: a page per file, its bytes served inline through the same
signed download (presigned S3 URL or a stream), a CSP that allows exactly that."""

from __future__ import annotations

import urllib.request

import pytest
from django.urls import reverse

from files import services
from files.models import TabloFile
from tests.support import samples
from tests.support.web import make_tablo, make_user, upload

pytestmark = pytest.mark.django_db

PNG = samples.png()
PDF = samples.pdf()


def stored(tablo, name, content, content_type) -> TabloFile:
    return services.file_upload(tablo=tablo, uploaded=upload(name, content, content_type))


def fetch_inline(client, tablo_file, storage) -> tuple[dict, bytes]:
    """The preview's bytes and headers, following the redirect to S3 when there is one."""
    response = client.get(reverse("files:inline", args=[tablo_file.id]))
    assert response["Cache-Control"] == "private, no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    if storage.kind == "local":
        assert response.status_code == 200
        return _lower(response.headers), b"".join(response.streaming_content)
    assert response.status_code == 302
    with urllib.request.urlopen(response["Location"]) as fetched:  # noqa: S310
        return _lower(fetched.headers), fetched.read()


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize(
    ("name", "content", "content_type", "element"),
    [
        ("photo.png", PNG, "image/png", "<img "),
        ("report.pdf", PDF, "application/pdf", "<iframe "),
    ],
    ids=["image", "pdf"],
)
def test_image_and_pdf_are_previewed_inline(
    storage, client_ann, tablo, name, content, content_type, element
):
    tablo_file = stored(tablo, name, content, content_type)

    page = client_ann.get(reverse("files:preview", args=[tablo_file.id]))

    assert page.status_code == 200
    html = page.content.decode()
    inline_url = reverse("files:inline", args=[tablo_file.id])
    assert f'{element}src="{inline_url}"' in html
    headers, body = fetch_inline(client_ann, tablo_file, storage)
    assert body == content
    assert headers["content-type"] == content_type
    assert headers["content-disposition"] == f'inline; filename="{name}"'
    detail = client_ann.get(reverse("tablos:detail", args=[tablo.id])).content.decode()
    assert reverse("files:preview", args=[tablo_file.id]) in detail


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("notes.txt", "text/plain"),
        ("drawing.svg", "image/svg+xml"),  # an image that can run scripts
        ("page.html", "text/html"),
        ("data.bin", "application/octet-stream"),
    ],
)
def test_other_types_have_no_preview(local_storage, client_ann, tablo, name, content_type):
    tablo_file = stored(tablo, name, b"<svg onload=alert(1)>", content_type)

    page = client_ann.get(reverse("files:preview", args=[tablo_file.id]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "No preview for this type of file" in html
    assert "<img " not in html
    assert "<iframe " not in html
    assert reverse("files:inline", args=[tablo_file.id]) not in html
    # Never served inline: the inline address sends to the download.
    inline = client_ann.get(reverse("files:inline", args=[tablo_file.id]))
    assert inline.status_code == 302
    assert inline["Location"] == reverse("files:download", args=[tablo_file.id])
    detail = client_ann.get(reverse("tablos:detail", args=[tablo.id])).content.decode()
    assert reverse("files:preview", args=[tablo_file.id]) not in detail
    assert "Preview" not in detail
    # The download still works, as an attachment.
    download = client_ann.get(reverse("files:download", args=[tablo_file.id]))
    assert download["Content-Disposition"].startswith("attachment")


def test_someone_elses_preview_is_404(storage, client, tablo):
    tablo_file = stored(tablo, "photo.png", PNG, "image/png")
    client.force_login(make_user("mallory"))

    for name in ("files:preview", "files:inline"):
        assert client.get(reverse(name, args=[tablo_file.id])).status_code == 404


def test_anonymous_preview_goes_to_sign_in(local_storage, client, tablo):
    tablo_file = stored(tablo, "photo.png", PNG, "image/png")

    response = client.get(reverse("files:inline", args=[tablo_file.id]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_only_the_inline_response_may_be_framed_and_only_by_this_site(
    local_storage, client_ann, tablo
):
    tablo_file = stored(tablo, "report.pdf", PDF, "application/pdf")

    inline = client_ann.get(reverse("files:inline", args=[tablo_file.id]))
    page = client_ann.get(reverse("files:preview", args=[tablo_file.id]))
    download = client_ann.get(reverse("files:download", args=[tablo_file.id]))

    assert inline["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in inline["Content-Security-Policy"]
    assert "object-src 'none'" in inline["Content-Security-Policy"]
    for response in (page, download):
        assert response["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    # Local storage: everything comes from this site, the policy is the site's own.
    policy = page["Content-Security-Policy"]
    assert "img-src 'self' data:;" in policy + ";"
    assert "frame-src" not in policy


def test_on_s3_the_preview_page_allows_the_bucket_origin_only(s3_storage, client_ann, tablo):
    tablo_file = stored(tablo, "photo.png", PNG, "image/png")
    origin = s3_storage.server.endpoint_url

    page = client_ann.get(reverse("files:preview", args=[tablo_file.id]))
    tablos = client_ann.get(reverse("tablos:list"))

    directives = dict(
        part.strip().split(" ", 1) for part in page["Content-Security-Policy"].split(";")
    )
    assert directives["img-src"] == f"'self' data: {origin}"
    assert directives["frame-src"] == f"'self' {origin}"
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert origin not in tablos["Content-Security-Policy"]


def test_the_preview_of_a_deleted_tablos_file_is_404(local_storage, client_ann, ann):
    tablo = make_tablo(ann, "Going away")
    tablo_file = stored(tablo, "photo.png", PNG, "image/png")
    tablo.delete()

    assert client_ann.get(reverse("files:preview", args=[tablo_file.id])).status_code == 404
