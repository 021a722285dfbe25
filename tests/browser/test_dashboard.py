"""Jobs -> Overview in Chromium, on a real cluster: charts from real runs, the per-job
link to Failed tasks, auto-refresh, and pause/resume stopping and restarting a cluster.

Screenshots at 1024 and 1440 px are always written to ``artifacts/browser/dashboard/``.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django_q.conf import Conf
from django_q.tasks import async_task
from playwright.sync_api import Page, expect

from jobs.engine import registry
from jobs.models import Job, JobStat
from tests.browser.test_e2e import (
    ARTIFACTS,
    browser_page,  # noqa: F401 (the fixture)
    sign_in,
)
from tests.support import runtime as _runtime_jobs  # noqa: F401 (registers tests.echo, tests.boom)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = ARTIFACTS / "dashboard"
ECHO = "tests.support.runtime.echo"


def wait_true(page, expression: str, timeout: float = 15.0) -> None:
    """Poll ``expression`` from the test (the page's CSP forbids Playwright's string eval)."""
    wait_until(lambda: page.evaluate(expression), timeout=timeout, what=expression)


def screenshot(page: Page, name: str, width: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": 900})
    wait_true(page, "document.body.dataset.chartsDrawn === 'true'")
    # Readable at this width: once the charts have followed the resize, nothing
    # sticks out sideways.
    wait_true(page, "document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)


def chart_totals(page: Page, canvas: str) -> list[int]:
    return page.evaluate(
        """(id) => Chart.getChart(id).data.datasets.map(
            (d) => d.data.reduce((sum, v) => sum + (v || 0), 0))""",
        canvas,
    )


def queue_cell(page: Page, queue: str, column: int):
    return page.locator(f'#queues tr[data-queue="{queue}"] td').nth(column)


def test_operator_reads_the_overview_and_pauses_a_queue(
    browser_page,  # noqa: F811
    live_server,
    worker_factory,
    settings,
) -> None:
    steps, page, base = browser_page, browser_page.page, live_server.url
    get_user_model().objects.create_superuser("operator", password="operator-pass-1")
    settings.JOBS_DEFAULT_MAX_ATTEMPTS = 1  # a failure is final: dead
    queue = Conf.CLUSTER_NAME
    worker = worker_factory(JOBS_DEFAULT_MAX_ATTEMPTS="1")
    control = worker_factory(Q_CLUSTER_NAME="control")
    boom = registry.get("tests.boom").path
    for i in range(6):
        registry.enqueue("tests.echo", f"v{i}", on_commit=False)
    for _ in range(2):
        registry.enqueue("tests.boom", on_commit=False)
    wait_until(
        lambda: (
            Job.objects.filter(state="dead").count() == 2
            and not Job.objects.exclude(state="dead").exists()
        ),
        timeout=60,
        what="the workload done",
    )
    # Both failures counted too: the page must not be read between their two flushes.
    wait_until(
        lambda: (
            (JobStat.objects.filter(span="minute").aggregate(n=Sum("succeeded"))["n"] or 0) >= 6
            and JobStat.objects.filter(span="minute").aggregate(n=Sum("failed"))["n"] == 2
        ),
        timeout=30,
        what="the runs counted",
    )

    sign_in(page, base, "operator", "operator-pass-1", admin=True)
    # The cluster keeps counting its own jobs (heartbeat...): the page shows what was
    # counted between these two reads.
    before = JobStat.objects.filter(span="minute").aggregate(ok=Sum("succeeded"), ko=Sum("failed"))
    jobs_section = page.locator(".app-jobs")
    expect(jobs_section.locator("tbody tr").first).to_contain_text("Overview")
    jobs_section.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("heading", name="Tasks per minute, last hour")).to_be_visible()
    wait_true(page, "document.body.dataset.chartsDrawn === 'true'")
    counted = JobStat.objects.filter(span="minute").aggregate(ok=Sum("succeeded"), ko=Sum("failed"))
    for canvas in ("chart-throughput-hour", "chart-throughput-week"):
        ok, ko = chart_totals(page, canvas)
        assert before["ok"] <= ok <= counted["ok"]
        assert ko == counted["ko"] == 2
    assert chart_totals(page, "chart-depth-hour")[3] >= 2  # the dead ones, now
    expect(queue_cell(page, queue, 4)).to_have_text("2")
    node = page.locator("#nodes tbody tr", has_text=queue)
    expect(node).to_have_count(1)
    expect(node.locator("td").last).to_have_text("ok")
    for width in (1024, 1440):
        screenshot(page, "overview", width)

    page.locator("#jobs").get_by_role("link", name="tests.boom").click()
    expect(page).to_have_url(f"{base}/admin/jobs/failedjob/?func={boom}")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    steps.shot("failed-tasks-of-the-job")

    page.go_back()
    wait_true(page, "document.body.dataset.chartsDrawn === 'true'")
    page.get_by_role("button", name=f"Pause {queue}").click()
    expect(page.get_by_text(f"Paused queue “{queue}”.")).to_be_visible()
    worker.wait_for_log("queue paused: claiming nothing", timeout=10)
    page.evaluate("window.__samePage = true")
    for i in range(3):
        async_task(ECHO, f"held-{i}")
    async_task(ECHO, "control", cluster="control")
    wait_until(
        lambda: not Job.objects.filter(queue="control").exists(),
        timeout=30,
        what="the control cluster's task done",
    )
    assert list(Job.objects.filter(queue=queue, state="queued").values_list("attempt", flat=True))
    assert Job.objects.filter(queue=queue, state="queued", attempt=0).count() == 3
    # The page shows them without a reload (its 5 s refresh).
    expect(queue_cell(page, queue, 1)).to_have_text("3", timeout=15_000)
    expect(queue_cell(page, queue, 8)).to_contain_text("paused")
    assert page.evaluate("window.__samePage") is True
    for width in (1024, 1440):
        screenshot(page, "overview-paused", width)

    page.get_by_role("button", name=f"Resume {queue}").click()
    expect(page.get_by_text(f"Resumed queue “{queue}”.")).to_be_visible()
    wait_until(
        lambda: not Job.objects.filter(queue=queue).exclude(state="dead").exists(),
        timeout=30,
        what="the held tasks done after resume",
    )
    expect(queue_cell(page, queue, 1)).to_have_text("0", timeout=15_000)
    expect(queue_cell(page, queue, 8)).to_contain_text("active")
    steps.shot("resumed")
    control.stop()
    worker.stop()
