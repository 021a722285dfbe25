"""End to end in Chromium: a user's whole path and an operator's retry of a failed task.

Live server (pytest-django) + a real qcluster + S3 (moto over HTTP). Screenshots
of every step are written to ``artifacts/browser/<test>/`` when a test fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django_q.tasks import async_task
from playwright.sync_api import Page, expect, sync_playwright

from jobs.models import Job, JobAttempt
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Steps:
    """Screenshots of every step, kept in memory and written only if the test fails."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.shots: list[tuple[str, bytes]] = []

    def shot(self, name: str) -> None:
        self.shots.append((name, self.page.screenshot(full_page=True)))

    def save(self, test_name: str) -> Path:
        folder = ARTIFACTS / test_name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (name, data) in enumerate(self.shots):
            (folder / f"{i:02d}-{name}.png").write_bytes(data)
        (folder / "99-failure.png").write_bytes(self.page.screenshot(full_page=True))
        return folder


@pytest.fixture
def browser_page(request, monkeypatch) -> Iterator[Steps]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # test makes between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(accept_downloads=True)
        context.set_default_timeout(20_000)
        steps = Steps(context.new_page())
        failed_before = request.session.testsfailed
        try:
            yield steps
        finally:
            # The failed call is counted before fixtures are torn down.
            if request.session.testsfailed > failed_before:
                steps.save(request.node.name)
            context.close()
            browser.close()
            # ORM calls made while Playwright's sync API ran got connections of
            # their own context; close them, or one outlives the test database.
            connections.close_all()


def sign_in(page: Page, base: str, username: str, password: str, *, admin: bool = False) -> None:
    page.goto(f"{base}/admin/login/" if admin else f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.locator("form [type=submit]").click()
    page.wait_for_load_state()


def test_user_creates_uploads_downloads_and_deletes(
    browser_page, live_server, s3_storage, worker_factory, tmp_path: Path
) -> None:
    steps, page, base = browser_page, browser_page.page, live_server.url
    get_user_model().objects.create_user("alice", password="alice-browser-pass-1")
    worker_factory(**s3_storage.env)

    sign_in(page, base, "alice", "alice-browser-pass-1")
    expect(page.get_by_role("heading", name="Your tablos")).to_be_visible()
    steps.shot("signed-in")

    page.get_by_label("Name").fill("Holiday photos")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Holiday photos")).to_be_visible()
    steps.shot("tablo-created")
    tablo_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    content = os.urandom(64 * 1024) + b"tablo e2e"
    source = tmp_path / "beach.bin"
    source.write_bytes(content)
    page.locator("input[type=file]").set_input_files(str(source))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("“beach.bin” uploaded.")).to_be_visible()
    steps.shot("uploaded")
    assert len(s3_storage.keys(f"tablos/{tablo_id}/")) == 1

    with page.expect_download() as info:
        page.get_by_role("link", name="beach.bin", exact=True).click()
    download = info.value
    assert download.suggested_filename == "beach.bin"
    assert Path(download.path()).read_bytes() == content

    page.get_by_role("link", name="Delete “Holiday photos”").click()
    steps.shot("confirm-delete")
    page.get_by_role("button", name="Delete tablo").click()
    expect(page.get_by_role("heading", name="Your tablos")).to_be_visible()
    expect(page.get_by_text("No tablos yet.")).to_be_visible()
    steps.shot("tablo-deleted")

    # The objects go through the worker (files.purge_tablo), not the request.
    wait_until(
        lambda: not s3_storage.keys(f"tablos/{tablo_id}/"), timeout=60, what="objects removed"
    )


def test_operator_retries_a_failed_task_from_the_admin(
    browser_page, live_server, worker_factory, settings, tmp_path: Path
) -> None:
    steps, page, base = browser_page, browser_page.page, live_server.url
    get_user_model().objects.create_superuser("operator", password="operator-pass-1")
    worker = worker_factory()
    settings.JOBS_DEFAULT_MAX_ATTEMPTS = 1  # dead after one failure: the operator decides
    task_id = async_task("tests.reliability.jobs.fail_once", str(tmp_path / "marker"))
    wait_until(
        lambda: Job.objects.filter(task_id=task_id, state="dead").exists(),
        timeout=60,
        what=f"the task to fail:\n{worker.log()[-3000:]}",
    )

    sign_in(page, base, "operator", "operator-pass-1", admin=True)
    page.goto(f"{base}/admin/jobs/failedjob/")
    steps.shot("failed-tasks")
    page.get_by_role("link", name="fail_once").first.click()
    expect(page.get_by_text("first attempt fails on purpose").first).to_be_visible()
    expect(page.locator("#attempt-1")).to_contain_text("RuntimeError")
    steps.shot("task-detail")

    page.get_by_role("button", name="Retry now").click()
    steps.shot("retried")
    expect(page.get_by_text("queued to run now")).to_be_visible()  # back on the list
    wait_until(lambda: not Job.objects.filter(task_id=task_id).exists(), timeout=60, what="success")
    assert JobAttempt.objects.filter(task_id=task_id, succeeded=True).exists()
    page.goto(f"{base}/admin/jobs/failedjob/")
    expect(page.get_by_role("link", name="fail_once")).to_have_count(0)
    steps.shot("gone-from-failed")
