"""Jobs -> Overview under the site's Content Security Policy, from a phone to a wide
screen: no violation, charts at full size in a grid, and one colour per task state shared
by the charts and their legends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django_q.conf import Conf
from playwright.sync_api import Page, sync_playwright

from jobs.engine import stats
from jobs.models import Job
from tests.browser.layout import csp_violations, overflowing, record_csp_violations
from tests.browser.test_dashboard import wait_true
from tests.browser.test_e2e import CHROMIUM_ARGS, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The state colours of static/css/jobs-overview.css, as the browser computes them.
STATE_COLOURS = {
    "succeeded": "rgb(46, 125, 50)",
    "failed": "rgb(198, 40, 40)",
    "dead": "rgb(198, 40, 40)",
    "queued": "rgb(21, 101, 192)",
    "retrying": "rgb(239, 108, 0)",
    "running": "rgb(106, 27, 154)",
}
CHARTS = {
    "chart-throughput-hour": ["succeeded", "failed"],
    "chart-throughput-week": ["succeeded", "failed"],
    "chart-depth-hour": ["queued", "retrying", "running", "dead"],
    "chart-depth-week": ["queued", "retrying", "running", "dead"],
}


@pytest.fixture
def overview(live_server, monkeypatch, request) -> Iterator[Page]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("root", password="root-browser-pass-1")
    for i in range(5):
        stats.count_run(func="tests.echo", queue=Conf.CLUSTER_NAME, success=i > 0, duration=0.1)
    stats.flush()
    Job.objects.create(
        task_id="q" * 32, queue=Conf.CLUSTER_NAME, name="a", func="tests.echo", payload=""
    )
    width = request.param
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": width, "height": 900})
        context.set_default_timeout(20_000)
        record_csp_violations(context)
        page = context.new_page()
        sign_in(page, live_server.url, "root", "root-browser-pass-1", admin=True)
        page.goto(f"{live_server.url}/admin/jobs/overview/")
        wait_true(page, "document.body.dataset.chartsDrawn === 'true'")
        try:
            yield page
        finally:
            browser.close()
            connections.close_all()


def chart_boxes(page: Page) -> list[dict[str, float]]:
    return page.evaluate(
        """(ids) => ids.map((id) => {
          const r = document.getElementById(id).getBoundingClientRect();
          return {left: r.left, width: r.width, height: r.height};
        })""",
        list(CHARTS),
    )


def columns(boxes: list[dict[str, float]]) -> int:
    return len({round(box["left"]) for box in boxes})


@pytest.mark.parametrize("overview", [390, 1024, 1440, 1920], indirect=True)
def test_overview_shows_full_size_charts_without_breaking_its_csp(
    overview: Page, tmp_path: Path
) -> None:
    page = overview
    width = page.viewport_size["width"]
    page.screenshot(path=str(tmp_path / f"overview-{width}.png"), full_page=True)
    assert csp_violations(page) == []
    assert overflowing(page) == []
    grid = page.locator(".dash-charts").bounding_box()
    assert grid is not None
    boxes = chart_boxes(page)
    for box in boxes:
        assert box["height"] >= 250
        assert box["width"] >= grid["width"] / columns(boxes) * 0.8
    if width >= 1440:
        assert columns(boxes) >= 2
    if width <= 390:
        assert columns(boxes) == 1


def legend_colours(page: Page, canvas: str) -> dict[str, str]:
    return page.evaluate(
        """(id) => Object.fromEntries(
          [...document.querySelectorAll(`[data-legend-for="${id}"] [data-state]`)].map(
            (e) => [e.dataset.state,
                    getComputedStyle(e.querySelector('.dash-swatch')).backgroundColor]))""",
        canvas,
    )


def dataset_colours(page: Page, canvas: str) -> dict[str, str]:
    """The colour Chart.js draws each state with, as the browser computes it."""
    return page.evaluate(
        """(id) => {
          const probe = document.createElement('span');
          document.body.append(probe);
          const colours = {};
          for (const d of Chart.getChart(id).data.datasets) {
            probe.style.color = d.backgroundColor;
            colours[d.label] = getComputedStyle(probe).color;
          }
          probe.remove();
          return colours;
        }""",
        canvas,
    )


@pytest.mark.parametrize("overview", [1440], indirect=True)
def test_charts_and_legends_share_the_state_colours(overview: Page) -> None:
    page = overview
    for canvas, states in CHARTS.items():
        expected = {state: STATE_COLOURS[state] for state in states}
        assert {s: c for s, c in legend_colours(page, canvas).items() if s in expected} == expected
        drawn = dataset_colours(page, canvas)
        assert {s: drawn[s] for s in states} == expected
    assert csp_violations(page) == []
