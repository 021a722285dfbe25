"""The tablos list and the tablo page in Chromium, from a phone to a wide screen:
nothing scrolls sideways, long names are cut but still readable, every action stays
on screen; files dropped on the page are uploaded with a progress bar; and no page
breaks the Content Security Policy.

Screenshots of every width are written to the test's own ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from files import services as file_services
from files.models import TabloFile
from tablos.models import Tablo
from tests.browser.layout import Browser, chromium, no_horizontal_overflow
from tests.browser.test_e2e import sign_in
from tests.support.web import upload

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTHS = [390, 1024, 1440]
PASSWORD = "carol-browser-pass-1"
# No spaces: the worst case for a layout (nothing to wrap at).
LONG_TABLO = "Quarterly-reports-of-the-northern-region-" * 4 + "final"
LONG_FILE = "scan-of-the-signed-contract-with-every-annex-" * 5 + "v2.pdf"


@pytest.fixture
def browser(live_server, monkeypatch, tmp_path: Path) -> Iterator[Browser]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_user("carol", password=PASSWORD)
    with chromium(live_server.url, tmp_path) as session:
        sign_in(session.page, live_server.url, "carol", PASSWORD)
        yield session
        session.assert_no_violations()


def truncated(page: Page, selector: str) -> bool:
    """Whether the element's text is cut (wider than its box)."""
    return page.locator(selector).evaluate("(el) => el.scrollWidth > el.clientWidth")


def within_viewport(page: Page, selector: str) -> bool:
    return page.locator(selector).evaluate(
        """(el) => { const r = el.getBoundingClientRect();
                     return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth; }"""
    )


def carols_tablo(name: str) -> Tablo:
    return Tablo.objects.create(owner=get_user_model().objects.get(username="carol"), name=name)


@pytest.mark.parametrize("width", WIDTHS)
def test_tablos_list_fits_and_keeps_long_names_readable(browser, width):
    page = browser.page
    carols_tablo("Short")
    long_tablo = carols_tablo(LONG_TABLO)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{browser.base}/tablos/")

    link = page.get_by_role("link", name=LONG_TABLO, exact=True)
    expect(link).to_be_visible()
    browser.shot(f"tablos-{width}")
    assert no_horizontal_overflow(page)
    selector = f'a[href="/tablos/{long_tablo.id}/"]'
    assert truncated(page, selector)
    expect(link).to_have_attribute("title", LONG_TABLO)
    expect(link).to_have_accessible_name(LONG_TABLO)
    assert within_viewport(page, selector)

    # Keyboard focus shows the whole name, still without sideways scrolling.
    full_name = page.locator(f"{selector} + .full-name")
    expect(full_name).to_be_hidden()
    link.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    expect(link).to_be_focused()
    expect(full_name).to_be_visible()
    expect(full_name).to_have_text(LONG_TABLO)
    assert not truncated(page, f"{selector} + .full-name")
    assert within_viewport(page, f"{selector} + .full-name")
    assert no_horizontal_overflow(page)
    browser.shot(f"tablos-{width}-focused")


@pytest.mark.parametrize("width", WIDTHS)
def test_tablo_page_fits_and_every_action_is_on_screen(browser, local_storage, width):
    page = browser.page
    tablo = carols_tablo(LONG_TABLO)
    file_services.file_upload(tablo=tablo, uploaded=upload("short.txt", b"short"))
    long_file = file_services.file_upload(tablo=tablo, uploaded=upload(LONG_FILE, b"%PDF-1"))
    assert long_file.original_name == LONG_FILE  # not cut by naming.display_name
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{browser.base}/tablos/{tablo.id}/")

    expect(page.get_by_role("heading", name=LONG_TABLO)).to_be_visible()
    browser.shot(f"tablo-{width}")
    assert no_horizontal_overflow(page)

    name_selector = f'.card-name[href="/files/{long_file.id}/download/"]'
    name = page.locator(name_selector)
    assert truncated(page, name_selector)
    expect(name).to_have_attribute("title", LONG_FILE)
    expect(name).to_have_accessible_name(LONG_FILE)

    for action in (f"Delete {LONG_FILE}", f"Download {LONG_FILE}"):
        button = page.get_by_role("link", name=action, exact=True)
        button.scroll_into_view_if_needed()
        expect(button).to_be_in_viewport(ratio=1)
    assert within_viewport(page, f'a[href="/files/{long_file.id}/delete/"]')

    full_name = page.locator(f"{name_selector} + .full-name")
    expect(full_name).to_be_hidden()
    name.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    expect(name).to_be_focused()
    expect(full_name).to_be_visible()
    expect(full_name).to_have_text(LONG_FILE)
    assert within_viewport(page, f"{name_selector} + .full-name")
    assert no_horizontal_overflow(page)
    browser.shot(f"tablo-{width}-focused")

    page.get_by_role("link", name=f"Delete {LONG_FILE}", exact=True).click()
    confirm = page.get_by_role("button", name="Delete file")
    confirm.scroll_into_view_if_needed()  # below a long name's heading on a phone
    expect(confirm).to_be_in_viewport(ratio=1)
    assert no_horizontal_overflow(page)
    browser.shot(f"confirm-delete-{width}")


def test_two_files_dropped_on_the_page_are_uploaded_with_progress(browser, s3_storage):
    page = browser.page
    tablo = carols_tablo("Drop box")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{browser.base}/tablos/{tablo.id}/")
    expect(page.get_by_text("You can also drop files here.")).to_be_visible()
    # Playwright's evaluate runs outside the page's CSP; a File made here is what
    # a desktop drag delivers to the page's drop handler.
    page.evaluate("() => { window.barValues = []; }")
    page.locator("#upload-bar").evaluate(
        """(bar) => new MutationObserver(() => window.barValues.push(bar.dataset.state))
             .observe(bar, {attributes: true, attributeFilter: ["data-state"]})"""
    )
    files = page.evaluate_handle(
        """() => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([new Uint8Array(300 * 1024).fill(97)], "alpha.bin"));
          transfer.items.add(new File(["bravo, the second file"], "bravo.txt",
                                      {type: "text/plain"}));
          return transfer;
        }"""
    )
    zone = page.locator("#drop-zone")
    zone.dispatch_event("dragenter", {"dataTransfer": files})
    zone.dispatch_event("dragover", {"dataTransfer": files})
    expect(zone).to_have_class("drop-zone is-dragover")
    zone.dispatch_event("drop", {"dataTransfer": files})

    bar = page.locator("#upload-bar")
    expect(bar).to_have_attribute("data-state", "done")
    assert page.evaluate("() => window.barValues") == ["uploading", "done"]
    assert bar.evaluate("(bar) => bar.value === bar.max")
    expect(page.locator("#upload-status")).to_have_text("Done: 2 of 2 files uploaded.")
    expect(page.get_by_text("“alpha.bin” uploaded.")).to_be_visible()
    expect(page.get_by_text("“bravo.txt” uploaded.")).to_be_visible()
    # The list shows them without a reload.
    for name in ("alpha.bin", "bravo.txt"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(zone).to_have_class("drop-zone")
    assert no_horizontal_overflow(page)
    browser.shot("dropped-390")

    rows = {f.original_name: f for f in TabloFile.objects.filter(tablo_id=tablo.id)}
    assert {name: f.size_bytes for name, f in rows.items()} == {
        "alpha.bin": 300 * 1024,
        "bravo.txt": len(b"bravo, the second file"),
    }
    assert s3_storage.keys(f"tablos/{tablo.id}/") == {f.storage_key for f in rows.values()}

    # A reload shows the same files (they are stored, not only drawn).
    page.reload()
    for name in ("alpha.bin", "bravo.txt"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()


def test_a_file_over_the_limit_is_refused_in_the_page_and_the_other_uploaded(
    browser, local_storage, settings
):
    settings.FILE_UPLOAD_MAX_BYTES = 1024
    page = browser.page
    tablo = carols_tablo("Limits")
    page.goto(f"{browser.base}/tablos/{tablo.id}/")
    page.locator("input[type=file]").set_input_files(
        [
            {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"x" * 2048},
            {"name": "ok.txt", "mimeType": "text/plain", "buffer": b"fine"},
        ]
    )
    page.get_by_role("button", name="Upload").click()

    expect(page.locator("#upload-bar")).to_have_attribute("data-state", "done")
    expect(page.locator("#upload-status")).to_have_text("Done: 1 of 2 files uploaded.")
    expect(
        page.get_by_text("“big.bin” was not uploaded: files may be at most 1.0\xa0KB.")
    ).to_be_visible()
    expect(page.get_by_text("“ok.txt” uploaded.")).to_be_visible()
    assert list(TabloFile.objects.values_list("original_name", flat=True)) == ["ok.txt"]


def test_the_csp_listener_reports_a_violation(browser):
    """The guard of every test here is not vacuous: an inline style is reported."""
    page = browser.page
    page.goto(f"{browser.base}/tablos/")
    page.evaluate(
        """() => { const s = document.createElement("style");
                   s.textContent = "body { color: red }";
                   document.head.append(s); }"""
    )
    for _ in range(100):  # the reports reach the test asynchronously
        if len(browser.violations) >= 2:
            break
        page.wait_for_timeout(50)
    # Once from the page's securitypolicyviolation event, once from the console.
    assert any(v.startswith("style-src-elem blocked inline on ") for v in browser.violations)
    assert any("Content Security Policy" in v for v in browser.violations)
    browser.violations.clear()  # expected here; the fixture checks for the unexpected


def test_without_javascript_the_plain_form_uploads_every_file(browser, local_storage):
    tablo = carols_tablo("No script")
    context = browser.page.context.browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, browser.base, "carol", PASSWORD)
        page.goto(f"{browser.base}/tablos/{tablo.id}/")
        expect(page.get_by_text("You can also drop files here.")).to_be_hidden()
        page.locator("input[type=file]").set_input_files(
            [
                {"name": "one.txt", "mimeType": "text/plain", "buffer": b"one"},
                {"name": "two.txt", "mimeType": "text/plain", "buffer": b"two"},
            ]
        )
        page.get_by_role("button", name="Upload").click()
        expect(page.get_by_text("2 files uploaded: “one.txt” and “two.txt”.")).to_be_visible()
        for name in ("one.txt", "two.txt"):
            expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
        page.screenshot(path=str(browser.shots / "no-javascript.png"), full_page=True)
    finally:
        context.close()
    assert sorted(TabloFile.objects.values_list("original_name", flat=True)) == [
        "one.txt",
        "two.txt",
    ]
