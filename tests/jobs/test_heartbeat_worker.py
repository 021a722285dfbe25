"""A real qcluster beats within 10 s of starting (the scheduler alone takes ~30 s)."""

from __future__ import annotations

import time

import pytest
from django_q.conf import Conf

from jobs.health import health_report
from jobs.models import WorkerHeartbeat
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_starting_worker_beats_within_10_seconds(worker_factory) -> None:
    WorkerHeartbeat.objects.all().delete()
    started = time.monotonic()
    worker = worker_factory(wait_ready=False, JOBS_LOG_SUCCESSES="true")
    worker.wait_until(
        lambda: WorkerHeartbeat.objects.filter(cluster=Conf.CLUSTER_NAME).exists(),
        timeout=10,
        what="a heartbeat row",
    )
    elapsed = time.monotonic() - started
    assert elapsed < 10
    # The start beat and the first scheduled beat may both run; the row holds
    # whichever wrote last, and that one logs after writing it.
    beat = WorkerHeartbeat.objects.get(cluster=Conf.CLUSTER_NAME)

    def logged_beat() -> dict | None:
        events = log_events(worker.log(), "worker heartbeat")
        return next((e for e in events if e["task_id"] == beat.task_id), None)

    worker.wait_until(lambda: logged_beat() is not None, timeout=5, what="the beat's log line")
    event = logged_beat()
    assert event is not None
    assert event["attempt"] == 1
    assert event["cluster"] == Conf.CLUSTER_NAME
    assert event["host"] == beat.host
    assert event["pid"] == beat.pid
    # The runtime's own lines around it carry the same context.
    finished_events = log_events(worker.log(), "task finished")
    assert any(
        e["task_id"] == beat.task_id and e["job"] == "jobs.heartbeat" for e in finished_events
    )
    # /healthz sees the fresh beat, and the monitor's count of the run.
    worker.wait_until(
        lambda: health_report().body["last_hour"]["finished"] >= 1,
        timeout=10,
        what="the run to be counted",
    )
    body = health_report().body
    [cluster] = [c for c in body["clusters"] if c["name"] == Conf.CLUSTER_NAME]
    assert cluster["status"] == "ok"
    assert body["status"] == "ok"
    assert worker.stop() == 0
