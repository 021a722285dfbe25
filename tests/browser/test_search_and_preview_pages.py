"""Search and previews in Chromium at 390, 1024 and 1440 px: one's own files found by
name, an image shown in the page and a PDF in the browser's viewer, from local storage
and from S3 (moto), with no Content Security Policy violation on any page or frame.

Screenshots of every page and width are written to the test's own ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Frame, Page, expect

from files import services as file_services
from tablos.models import Tablo
from tests.browser.layout import Browser, chromium, no_horizontal_overflow
from tests.browser.test_e2e import sign_in
from tests.support import samples
from tests.support.web import upload

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTHS = [390, 1024, 1440]
PASSWORD = "gina-browser-pass-3"
LONG_NAME = "minutes-of-the-annual-general-meeting-with-every-appendix-" * 3 + "signed.pdf"
# The PDF viewer is an extension page in its own frame: its presence means it rendered.
PDF_VIEWER = "chrome-extension://"


@pytest.fixture
def gina(live_server, monkeypatch, tmp_path: Path, request) -> Iterator[Browser]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    User.objects.create_user("gina", password=PASSWORD)
    with chromium(live_server.url, tmp_path, width=request.getfixturevalue("width")) as session:
        sign_in(session.page, live_server.url, "gina", PASSWORD)
        yield session
        session.assert_no_violations()


# Chromium's viewer lays the document out in a #sizer box as big as its pages.
_PAGES_LAID_OUT = """() => { const sizer = document.getElementById("sizer");
                             return !!sizer && sizer.getBoundingClientRect().height > 0; }"""


def pdf_viewer_rendered(page: Page) -> bool:
    """Whether Chromium's PDF viewer opened in the page and laid out the document."""
    for _ in range(150):  # up to 15 s: the viewer starts in a process of its own
        if any(frame.url.startswith(PDF_VIEWER) for frame in page.frames) and any(
            _laid_out(frame) for frame in page.frames if frame != page.main_frame
        ):
            return True
        page.wait_for_timeout(100)
    return False


def _laid_out(frame: Frame) -> bool:
    try:
        return bool(frame.evaluate(_PAGES_LAID_OUT))
    except PlaywrightError:  # a frame that navigated or went away meanwhile
        return False


def ginas_tablo(name: str) -> Tablo:
    return Tablo.objects.create(owner=User.objects.get(username="gina"), name=name)


def store(tablo: Tablo, name: str, content: bytes, content_type: str):
    return file_services.file_upload(tablo=tablo, uploaded=upload(name, content, content_type))


@pytest.mark.parametrize("width", WIDTHS)
def test_search_finds_own_files_and_fits(gina, local_storage, width):
    page = gina.page
    tablo = ginas_tablo("Board meetings")
    store(tablo, LONG_NAME, samples.pdf(), "application/pdf")
    store(tablo, "minutes-2025.txt", b"notes", "text/plain")
    store(tablo, "agenda.txt", b"agenda", "text/plain")
    stranger = User.objects.create_user("stranger")
    theirs = Tablo.objects.create(owner=stranger, name="Theirs")
    store(theirs, "their-minutes.txt", b"x", "text/plain")

    page.goto(f"{gina.base}/tablos/")
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Search your tablos and files").fill("MINUTES")
    page.get_by_role("button", name="Search").click()

    expect(page.get_by_role("heading", name="2 results for “MINUTES”")).to_be_visible()
    results = page.locator(".search-results .card-name")
    expect(results).to_have_text(["minutes-2025.txt", LONG_NAME])
    expect(page.get_by_role("link", name=f"Preview {LONG_NAME}")).to_be_visible()
    gina.shot(f"search-{width}")
    assert no_horizontal_overflow(page)

    # The field holds at most 100 characters; blanks are what a person can still send.
    page.get_by_label("Search your tablos and files").fill("   ")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_have_text("Type part of a name to search for.")
    gina.shot(f"search-error-{width}")
    assert no_horizontal_overflow(page)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_an_image_and_a_pdf_are_previewed(gina, request, kind, width):
    storage = request.getfixturevalue(f"{kind}_storage")
    page = gina.page
    tablo = ginas_tablo("Scans")
    image = store(tablo, "blue.png", samples.png(600, 300), "image/png")
    document = store(tablo, LONG_NAME, samples.pdf("Signed by everyone"), "application/pdf")
    store(tablo, "plain.txt", b"no preview", "text/plain")

    page.goto(f"{gina.base}/tablos/{tablo.id}/")
    expect(page.get_by_role("link", name="Preview plain.txt")).to_have_count(0)
    page.get_by_role("link", name="Preview blue.png").click()
    picture = page.get_by_role("img", name="blue.png")
    expect(picture).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('.preview-image'); "
        "return i.complete && i.naturalWidth === 600; }"
    )
    assert picture.evaluate("(img) => img.getBoundingClientRect().right <= window.innerWidth")
    gina.shot(f"preview-image-{kind}-{width}")
    assert no_horizontal_overflow(page)

    page.goto(f"{gina.base}/files/{document.id}/preview/")
    expect(page.get_by_title(LONG_NAME, exact=True).and_(page.locator("iframe"))).to_be_visible()
    assert pdf_viewer_rendered(page), [frame.url for frame in page.frames]
    # The viewport as it is: a full-page shot resizes it, and the viewer redraws.
    page.locator("iframe").scroll_into_view_if_needed()
    gina.shot(f"preview-pdf-{kind}-{width}", full_page=False)
    assert no_horizontal_overflow(page)
    assert image.storage_key in storage.keys(f"tablos/{tablo.id}/")
