"""The task page and the Tasks search in Chromium, from a 390 px phone to a wide screen:
nothing the Content Security Policy blocks, nothing sticking out sideways, the
traceback and arguments readable, and Retry now working from the page.

Screenshots are written to ``artifacts/browser/taskpage/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from jobs.models import Job
from tests.browser.layout import csp_violations, overflowing, record_csp_violations
from tests.browser.test_e2e import ARTIFACTS, CHROMIUM_ARGS, sign_in
from tests.support.taskpage import fail, node, run_on, task_row

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = ARTIFACTS / "taskpage"
WIDTHS = (390, 1024, 1440)
LONG = "botocore.exceptions.EndpointConnectionError: could not connect to " + "x" * 160


@pytest.fixture
def operator(live_server, monkeypatch) -> Iterator[tuple[Page, str, dict[str, Job]]]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("root", password="root-browser-pass-1")
    now = timezone.now()
    dead = task_row(
        4711,
        "tok_live_secret",
        options={"password": "hunter2", "path": "tablos/" + "deep/" * 40 + "file.pdf"},
        state=Job.State.DEAD,
        created_at=now - timedelta(minutes=10),
    )
    fail(
        dead,
        attempt=1,
        message=LONG,
        host="a-very-long-worker-host-name.internal",
        pid=123456,
        at=now - timedelta(minutes=9),
    )
    fail(dead, attempt=2, message="gateway timed out", host="w2", pid=22, at=now)
    running = run_on(
        task_row(42, "t"),
        node(host="worker-7", pid=4242),
        progress_done=30,
        progress_total=120,
        progress_message="rows copied",
        progress_updated_at=timezone.now(),
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(20_000)
        record_csp_violations(context)
        page = context.new_page()
        sign_in(page, live_server.url, "root", "root-browser-pass-1", admin=True)
        try:
            yield page, live_server.url, {"dead": dead, "running": running}
        finally:
            browser.close()
            connections.close_all()


def look(page: Page, name: str, width: int) -> None:
    """At ``width``: no CSP violation, nothing off-screen sideways; a screenshot kept."""
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_load_state()
    assert csp_violations(page) == [], (name, width)
    assert overflowing(page) == [], (name, width)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        name,
        width,
        page.evaluate("document.documentElement.scrollWidth"),
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)


def test_the_task_page_reads_well_at_every_width_and_retries(operator) -> None:
    page, base, tasks = operator
    dead = tasks["dead"]
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{base}/admin/jobs/task/{dead.task_id}/")
        expect(page.locator("#task-state")).to_have_text("dead")
        expect(page.locator("#attempt-2 pre.traceback")).to_contain_text("gateway timed out")
        expect(page.locator("#task-args")).to_contain_text("****")
        expect(page.locator("#task-args")).not_to_contain_text("hunter2")
        look(page, "failed", width)

        page.goto(f"{base}/admin/jobs/task/{tasks['running'].task_id}/")
        expect(page.locator("#task-progress progress")).to_have_attribute("value", "25")
        expect(page.locator("#task-claimed")).to_contain_text("worker-7 pid 4242")
        look(page, "running", width)

        page.goto(f"{base}/admin/jobs/task/?state=dead&arguments=customer_id%3D4711")
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        look(page, "search", width)

    page.goto(f"{base}/admin/jobs/task/{dead.task_id}/")
    page.get_by_role("button", name="Retry now").click()
    expect(page.locator("#task-state")).to_have_text("queued")
    expect(page.locator(".messagelist")).to_contain_text("Retried: queued to run now.")
    assert csp_violations(page) == []


def test_an_unknown_task_is_a_readable_404(operator) -> None:
    page, base, _ = operator
    response = page.goto(f"{base}/admin/jobs/task/{'0' * 32}/")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#task-missing")).to_contain_text("No task with the id")
    look(page, "missing", 390)


def test_cancel_from_the_task_page_on_a_phone(operator) -> None:
    page, base, tasks = operator
    running = tasks["running"]
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(f"{base}/admin/jobs/task/{running.task_id}/")
    page.locator("#task-cancel").click()
    expect(page.locator("#cancel-count")).to_contain_text("of which 1 running")
    look(page, "confirm-cancel", 390)
    page.locator("#id_grace").fill("7")
    page.get_by_role("button", name="Yes, cancel 1").click()

    expect(page.locator(".messagelist")).to_contain_text("asked 1 running task to stop")
    expect(page.locator("#task-state")).to_have_text("running")
    job = Job.objects.get(id=running.id)
    assert job.cancel_requested_at is not None
    assert job.cancel_grace == 7
    look(page, "cancel-requested", 390)
