"""Two qcluster processes on one database: each task runs once, each schedule tick fires once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from jobs.engine import registry
from jobs.health import health_report
from jobs.models import Job
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_clusters_run_each_task_once_and_each_tick_once(worker_factory) -> None:
    schedule = Schedule.objects.create(
        name="scaleout_probe",
        func="tests.support.runtime.echo",
        args="('tick',)",
        schedule_type=Schedule.MINUTES,
        minutes=10,
        repeats=-1,
        next_run=timezone.now() - timedelta(seconds=1),
    )
    # Each node's supervisor makes a scheduler pass as it starts.
    first = worker_factory(wait_ready=False, JOBS_LOG_SUCCESSES="true")
    second = worker_factory(wait_ready=False, JOBS_LOG_SUCCESSES="true")
    first.wait_for_log("running.")
    second.wait_for_log("running.")

    ids = registry.enqueue_many("tests.echo", [(f"task-{i}",) for i in range(40)])

    def finished() -> set[str]:
        return {e["task_id"] for w in (first, second) for e in log_events(w.log(), "task finished")}

    def ticks() -> list[dict]:
        return [
            e
            for w in (first, second)
            for e in log_events(w.log(), "inside job")
            if e.get("value") == "tick"
        ]

    first.wait_until(lambda: set(ids) <= finished(), timeout=60, what="every task to finish")
    first.wait_until(lambda: ticks(), timeout=30, what="the schedule to fire")
    # Each worker counted its share of the runs (/healthz "finished in the last hour").
    first.wait_until(
        lambda: health_report().body["last_hour"]["succeeded"] >= len(ids) + 1,
        timeout=10,
        what="every run to be counted",
    )
    # Stopped, each node has made its pass: the next tick is 10 min away.
    assert first.stop() == 0
    assert second.stop() == 0

    assert len(ticks()) == 1
    schedule.refresh_from_db()
    assert schedule.next_run > timezone.now()

    runs = Counter(
        e["task_id"]
        for w in (first, second)
        for e in log_events(w.log(), "inside job")
        if e.get("value", "").startswith("task-")
    )
    assert set(runs) == set(ids)
    assert set(runs.values()) == {1}


def test_a_worker_for_a_named_cluster_reads_what_the_site_signed(worker_factory) -> None:
    """Q_CLUSTER_NAME picks the queue a worker serves; the signing salt stays the site's."""
    reports = worker_factory(Q_CLUSTER_NAME="reports", JOBS_LOG_SUCCESSES="true")
    # The default queue's task goes first: a claim that ignored the queue would take it
    # with (or before) the reports task, which is claimed after it.
    for_default = async_task("tests.support.runtime.echo", "for-default")
    for_reports = async_task("tests.support.runtime.echo", "for-reports", cluster="reports")

    def finished() -> dict[str, bool]:
        return {e["task_id"]: e["success"] for e in log_events(reports.log(), "task finished")}

    reports.wait_until(lambda: for_reports in finished(), timeout=30, what="the reports task")
    assert finished()[for_reports] is True
    started = {e["task_id"]: e["cluster"] for e in log_events(reports.log(), "task finished")}
    assert started[for_reports] == "reports"
    # The default queue's task is not this worker's: it waits for a default worker.
    assert reports.stop() == 0
    assert for_default not in finished()
    waiting = Job.objects.get(task_id=for_default)
    assert (waiting.queue, waiting.state, waiting.owner) == ("tablo", Job.State.QUEUED, None)
