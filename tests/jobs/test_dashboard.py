"""Jobs -> Overview: the figures it shows, who may see it and pause from it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.utils import timezone
from django_q.conf import Conf

from jobs.dashboard import selectors
from jobs.engine import paused, registry, stats, transitions
from jobs.models import (
    DURATION_BOUNDS,
    Job,
    JobStat,
    QueuePause,
    QueueSample,
    WorkerNode,
)
from tests.support import jobtable
from tests.support import limits as _limit_jobs  # noqa: F401 (registers tests.limited...)
from tests.support import runtime as _runtime_jobs  # noqa: F401 (registers tests.echo)
from tests.support.admin import grant, messages_of, url

pytestmark = pytest.mark.django_db

FUNC = "tests.support.runtime.echo"
OTHER = "app.tasks.other"


@pytest.fixture
def superuser(client) -> User:
    user = User.objects.create_superuser("root", password="x")
    client.force_login(user)
    return user


def runs(func: str, durations: list[float], *, failed: int = 0, at=None) -> None:
    for i, seconds in enumerate(durations):
        stats.count_run(
            func=func, queue=Conf.CLUSTER_NAME, success=i >= failed, duration=seconds, at=at
        )


def test_a_run_is_added_to_its_minute_its_hour_and_the_total() -> None:
    now = timezone.now()
    runs(FUNC, [0.02, 0.02, 3.0], failed=1, at=now)
    runs(FUNC, [0.02], at=now - timedelta(hours=2))
    rows = {
        (r.span, r.start): r for r in JobStat.objects.filter(func=FUNC, queue=Conf.CLUSTER_NAME)
    }
    minute = now.replace(second=0, microsecond=0)
    this_minute = rows[("minute", minute)]
    assert (this_minute.succeeded, this_minute.failed) == (2, 1)
    assert this_minute.d1 == 2  # 0.02 s: the (0.01, 0.025] bucket
    assert this_minute.d8 == 1  # 3 s: (2.5, 5]
    assert this_minute.duration_sum == pytest.approx(3.04)
    assert this_minute.last_failed_at == now
    assert rows[("hour", minute.replace(minute=0))].succeeded == 2
    total = rows[("total", stats.TOTAL_START)]
    assert (total.succeeded, total.failed, total.last_failed_at) == (3, 1, now)
    assert len(rows) == 5  # two minutes, two hours, one total


def test_quantiles_interpolate_within_the_bucket() -> None:
    buckets = [0] * (len(DURATION_BOUNDS) + 1)
    buckets[1] = 50  # (0.01, 0.025]
    buckets[6] = 50  # (0.5, 1.0]
    assert selectors.quantile(buckets, 0.5) == pytest.approx(0.025)
    assert selectors.quantile(buckets, 0.95) == pytest.approx(0.5 + 0.5 * 45 / 50)
    buckets[-1] = 1000
    assert selectors.quantile(buckets, 0.95) == DURATION_BOUNDS[-1]
    assert selectors.quantile([0] * len(buckets), 0.5) is None


def test_job_table_over_24_hours_links_to_failed_tasks(client, superuser) -> None:
    now = timezone.now()
    runs(FUNC, [0.02] * 18 + [0.7] * 2, failed=2, at=now)
    runs(OTHER, [0.2], at=now - timedelta(hours=30))  # outside the 24 hours
    [row] = selectors.job_table(now=now)
    assert row["name"] == "tests.echo"
    assert (row["runs"], row["failures"], row["failure_rate"]) == (20, 2, 0.1)
    assert 0.01 < row["p50"] <= 0.025
    assert 0.5 < row["p95"] <= 1.0
    assert row["last_failed_at"] == now

    response = client.get(url("admin:jobs_overview_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/admin/jobs/failedjob/?func={FUNC}"' in html
    assert "10.0 %" in html
    for canvas in ("throughput-hour", "throughput-week", "depth-hour", "depth-week"):
        assert f'id="chart-{canvas}"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html


def test_charts_count_per_minute_and_per_hour_with_zeros_between() -> None:
    now = timezone.now().replace(second=30)
    runs(FUNC, [0.1] * 3, failed=1, at=now)
    runs(FUNC, [0.1] * 2, at=now - timedelta(minutes=5))
    runs(FUNC, [0.1] * 4, at=now - timedelta(days=2))
    hour = selectors.throughput(window=selectors.LAST_HOUR, now=now)
    assert len(hour["labels"]) == 60
    assert (hour["succeeded"][-1], hour["failed"][-1]) == (2, 1)
    assert hour["succeeded"][-6] == 2
    assert sum(hour["succeeded"]) + sum(hour["failed"]) == 5
    week = selectors.throughput(window=selectors.LAST_WEEK, now=now)
    assert len(week["labels"]) == 7 * 24
    assert sum(week["succeeded"]) + sum(week["failed"]) == 9


def test_depth_charts_read_the_samples_and_show_the_depth_now() -> None:
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    QueueSample.objects.create(minute=minute - timedelta(minutes=10), queue="a", queued=4)
    QueueSample.objects.create(minute=minute - timedelta(minutes=10), queue="b", queued=3, dead=1)
    Job.objects.create(task_id="q1", queue="a", name="n", func=FUNC, payload="p")
    figures = selectors.overview(now=now)
    depth = figures["charts"]["depth_hour"]
    assert depth["queued"][-11] == 7
    assert depth["dead"][-11] == 1
    assert depth["queued"][-1] == 1  # the live figure
    assert depth["queued"][-2] is None  # no sample: a gap, not a zero
    week = figures["charts"]["depth_week"]
    assert max(v or 0 for v in week["queued"]) == 7


def test_heartbeat_sample_records_depth_and_oldest_age() -> None:
    now = timezone.now()
    Job.objects.create(
        task_id="q1", queue="a", name="n", func=FUNC, payload="p", created_at=now - timedelta(60)
    )
    Job.objects.create(task_id="d1", queue="a", name="n", func=FUNC, payload="p", state="dead")
    sample = stats.sample_queue(queue="a", now=now)
    assert (sample.queued, sample.dead, sample.running) == (1, 1, 0)
    assert sample.oldest_queued_age == pytest.approx(60 * 86400, rel=0.01)
    stats.sample_queue(queue="a", now=now)
    assert QueueSample.objects.count() == 1


def test_prune_keeps_totals_and_recent_rows() -> None:
    now = timezone.now()
    runs(FUNC, [0.1], at=now - timedelta(days=40))
    runs(FUNC, [0.1], at=now)
    QueueSample.objects.create(minute=now - timedelta(days=9), queue="a")
    stats.prune(now=now)
    assert sorted(JobStat.objects.values_list("span", flat=True)) == ["hour", "minute", "total"]
    assert JobStat.objects.get(span="total").succeeded == 2
    assert not QueueSample.objects.exists()


def test_nodes_show_every_worker_node_with_its_state_and_running_tasks() -> None:
    now = timezone.now()
    live = WorkerNode.objects.create(
        cluster="tablo", host="web1", pid=10, last_beat_at=now, started_at=now
    )
    WorkerNode.objects.create(
        cluster="tablo", host="web2", pid=11, started_at=now - timedelta(minutes=5),
        last_beat_at=now - timedelta(minutes=1), dead_at=now - timedelta(seconds=40),
    )  # fmt: skip
    WorkerNode.objects.create(
        cluster="tablo", host="web3", pid=12, started_at=now, last_beat_at=now - timedelta(days=1),
        stopped_at=now - timedelta(days=1),
    )  # fmt: skip
    Job.objects.create(
        task_id="r1",
        queue="tablo",
        name="n",
        func=FUNC,
        payload="p",
        state="running",
        claimed_by="tablo@web1:999",
        owner=live.id,
    )
    nodes = {n["host"]: n for n in selectors.worker_nodes(now=now)}
    assert set(nodes) == {"web1", "web2"}  # a node that ended a day ago is not listed
    assert (nodes["web1"]["state"], nodes["web1"]["tasks_running"]) == ("ok", 1)
    assert (nodes["web2"]["state"], nodes["web2"]["tasks_running"]) == ("dead", 0)


def test_data_url_gives_charts_and_tables(client, superuser) -> None:
    runs(FUNC, [0.1] * 2)
    response = client.get(url("admin:jobs_overview_data"))
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    body = json.loads(response.content)
    assert sum(body["charts"]["throughput_hour"]["succeeded"]) == 2
    assert 'id="queues"' in body["tables"]
    assert "tests.echo" in body["tables"]


def test_overview_is_the_first_entry_of_the_jobs_section(client, superuser) -> None:
    response = client.get(url("admin:index"))
    [jobs] = [app for app in response.context["app_list"] if app["app_label"] == "jobs"]
    assert jobs["models"][0]["object_name"] == "Overview"
    assert jobs["models"][0]["admin_url"] == "/admin/jobs/overview/"


def test_staff_need_the_view_permission_and_change_to_pause(client, staff) -> None:
    client.force_login(staff)
    assert client.get(url("admin:jobs_overview_changelist")).status_code == 403
    assert client.get(url("admin:jobs_overview_data")).status_code == 403
    viewer = grant(staff, "view_overview")
    client.force_login(viewer)
    response = client.get(url("admin:jobs_overview_changelist"))
    assert response.status_code == 200
    assert "Pause" not in response.content.decode()
    response = client.post(url("admin:jobs_overview_pause"), {"queue": Conf.CLUSTER_NAME})
    assert response.status_code == 403
    assert not QueuePause.objects.exists()


def test_pause_and_resume_from_the_page(client, superuser) -> None:
    response = client.post(
        url("admin:jobs_overview_pause"), {"queue": Conf.CLUSTER_NAME}, follow=True
    )
    assert messages_of(response) == [f"Paused queue “{Conf.CLUSTER_NAME}”."]
    assert paused.is_paused(Conf.CLUSTER_NAME)
    html = response.content.decode()
    assert "paused</span>" in html
    assert "by root" in html
    assert f'aria-label="Resume {Conf.CLUSTER_NAME}"' in html

    response = client.post(url("admin:jobs_overview_pause"), {"queue": "nope"}, follow=True)
    assert messages_of(response)[0].startswith("unknown queue 'nope'; known queues: ")

    response = client.post(
        url("admin:jobs_overview_resume"), {"queue": Conf.CLUSTER_NAME}, follow=True
    )
    assert messages_of(response) == [f"Resumed queue “{Conf.CLUSTER_NAME}”."]
    assert not paused.is_paused(Conf.CLUSTER_NAME)
    assert LogEntry.objects.filter(user=superuser).count() == 2
    assert client.get(url("admin:jobs_overview_pause")).status_code == 405


def test_limits_in_use_show_what_runs_against_each_limit(client, superuser) -> None:
    for _ in range(4):
        registry.enqueue("tests.limited", "log", on_commit=False)
    for _ in range(3):
        registry.enqueue("tests.rated_per_key", "log", "g1", on_commit=False)
    me = jobtable.node(Conf.CLUSTER_NAME)
    for i in range(10):  # as workers would, until the limits hold the rest back
        if not transitions.claim_limited(
            alias="default",
            queue=Conf.CLUSTER_NAME,
            node=me,
            by=f"w{i}",
            limit=10,
            queue_limit=None,
        ).claimed:
            break

    html = client.get(url("admin:jobs_overview_changelist")).content.decode()

    limits = html[html.index('id="limits"') :]
    concurrency = limits[limits.index('data-limit="tests.limited"') :]
    assert "3 / 3" in concurrency.split("</tr>")[0]
    assert '<span class="dash-full">full</span>' in concurrency.split("</tr>")[0]
    assert '<td class="num">1</td>' in concurrency.split("</tr>")[0]  # the fourth waits
    rate = limits[limits.index('data-rate="tests.rated_per_key:g1"') :].split("</tr>")[0]
    assert "2 / 2" in rate
    assert "60 s" in rate


def test_limits_say_so_when_none_is_in_use(client, superuser) -> None:
    html = client.get(url("admin:jobs_overview_changelist")).content.decode()
    assert "No task with a concurrency limit is waiting or running." in html
    assert "No task with a rate limit is waiting or running." in html
