"""The admin's task lists fit the window: every column visible without scrolling
sideways at 1400 px, nothing drawn over the title or cut off at 1024 px, and nothing
the site's Content Security Policy blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django_q.models import Schedule
from playwright.sync_api import Page, sync_playwright

from jobs.models import Job
from tests.browser.layout import csp_violations, overflowing, record_csp_violations
from tests.browser.test_e2e import CHROMIUM_ARGS, sign_in
from tests.support.failures import failed_rows

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PAGES = ["/admin/jobs/failedjob/", "/admin/jobs/queuedjob/", "/admin/django_q/schedule/"]
LONG = "botocore.exceptions.EndpointConnectionError: could not connect to " + "x" * 120


@pytest.fixture
def admin_page(live_server, monkeypatch) -> Iterator[Page]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("root", password="root-browser-pass-1")
    failed_rows(3, message=LONG, func="tests.support.failures.a_function_with_a_long_name" * 2)
    Job.objects.create(
        task_id="q" * 32,
        queue="tablo",
        name="seven-juliet-kilo-lima",
        func="files.tasks.purge_tablo_with_a_rather_long_function_name",
        job_name="files.purge_tablo",
        payload="",
        claimed_by="tablo@a-very-long-worker-host-name.internal:123456",
    )
    Schedule.objects.create(
        name="orphan_cleanup_every_hour_with_a_long_name",
        func="files.tasks.orphan_cleanup_with_a_rather_long_function_name",
        schedule_type=Schedule.HOURLY,
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        record_csp_violations(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, live_server.url, "root", "root-browser-pass-1", admin=True)
        try:
            yield page
        finally:
            browser.close()
            connections.close_all()


def overflow(page: Page) -> int:
    """How many pixels the result table sticks out of its box (0: it fits)."""
    return page.evaluate(
        "() => { const r = document.querySelector('#changelist .results');"
        " return r ? r.scrollWidth - r.clientWidth : -1; }"
    )


def title_covered(page: Page) -> bool:
    """Whether the title's text shares pixels with the object tools or the filter."""
    return page.evaluate(
        """() => {
          const range = document.createRange();
          range.selectNodeContents(document.querySelector('#content h1'));
          const t = range.getBoundingClientRect();
          return [...document.querySelectorAll('.object-tools li, #changelist-filter, #toolbar')]
            .map(e => e.getBoundingClientRect())
            .some(b => b.width && b.height && b.left < t.right && t.left < b.right
                       && b.top < t.bottom && t.top < b.bottom);
        }"""
    )


@pytest.mark.parametrize("path", PAGES)
def test_task_lists_fit_at_1400_and_keep_the_title_clear_at_1024(admin_page, live_server, path):
    admin_page.goto(f"{live_server.url}{path}")
    assert overflow(admin_page) == 0
    admin_page.set_viewport_size({"width": 1024, "height": 800})
    admin_page.goto(f"{live_server.url}{path}")
    assert not title_covered(admin_page)


@pytest.mark.parametrize("path", PAGES)
def test_task_lists_are_whole_at_1024_and_keep_to_the_csp(
    admin_page, live_server, path, tmp_path: Path
):
    admin_page.set_viewport_size({"width": 1024, "height": 800})
    admin_page.goto(f"{live_server.url}{path}")
    admin_page.screenshot(path=str(tmp_path / "list-1024.png"), full_page=True)
    assert overflowing(admin_page) == []
    # With the filter moved above it, the table has the content's width: every column shows.
    assert overflow(admin_page) == 0
    # The row actions stay within reach: the action bar and its Go button are on screen.
    go = admin_page.locator("#changelist-form .actions button[type=submit]").bounding_box()
    assert go is not None
    assert go["x"] + go["width"] <= 1024
    assert csp_violations(admin_page) == []
