from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf

from jobs.engine import registry, stats
from jobs.models import Job, JobAttempt, WorkerHeartbeat

pytestmark = pytest.mark.django_db


def beat(cluster: str, age: timedelta) -> WorkerHeartbeat:
    return WorkerHeartbeat.objects.create(
        cluster=cluster, host="h", pid=1, last_beat_at=timezone.now() - age
    )


def get(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def test_needs_no_login_and_reports_database_ok(client) -> None:
    status, body = get(client)
    assert status == 200
    assert body["database"]["status"] == "ok"


def test_cluster_statuses_ok_stale_never(client, settings) -> None:
    settings.HEARTBEAT_INTERVAL_SECONDS = 60
    beat(Conf.CLUSTER_NAME, timedelta(seconds=20))
    beat("old-cluster", timedelta(minutes=10))
    status, body = get(client)
    assert status == 200
    clusters = {c["name"]: c for c in body["clusters"]}
    assert clusters[Conf.CLUSTER_NAME]["status"] == "ok"
    assert 19 <= clusters[Conf.CLUSTER_NAME]["age_seconds"] <= 30
    assert clusters["old-cluster"]["status"] == "stale"
    assert body["status"] == "degraded"

    WorkerHeartbeat.objects.all().delete()
    status, body = get(client)
    assert status == 200
    [configured] = body["clusters"]
    assert configured == {
        "name": Conf.CLUSTER_NAME,
        "status": "never",
        "last_heartbeat_at": None,
        "age_seconds": None,
        "host": None,
        "pid": None,
    }


def test_stale_means_older_than_three_intervals(client, settings) -> None:
    settings.HEARTBEAT_INTERVAL_SECONDS = 60
    beat(Conf.CLUSTER_NAME, timedelta(seconds=170))
    assert get(client)[1]["clusters"][0]["status"] == "ok"
    WorkerHeartbeat.objects.update(last_beat_at=timezone.now() - timedelta(seconds=190))
    assert get(client)[1]["clusters"][0]["status"] == "stale"


def test_queue_dead_and_last_hour_figures(client) -> None:
    now = timezone.now()
    ids = registry.enqueue_many("tests.echo", [("a",), ("b",), ("c",)], on_commit=False)
    Job.objects.filter(task_id=ids[0]).update(created_at=now - timedelta(minutes=5))
    dead = registry.enqueue("tests.echo", "secret-argument", on_commit=False)
    Job.objects.filter(task_id=dead).update(
        state=Job.State.DEAD, last_failed_at=now - timedelta(hours=2), last_error_type="E"
    )
    JobAttempt.objects.create(task_id=dead, attempt=1, func="f", finished_at=now)
    JobAttempt.objects.create(
        task_id=dead, attempt=0, func="f", finished_at=now - timedelta(hours=3)
    )
    stats.count_run(func="f", queue="q", success=True, duration=None, at=now)
    stats.count_run(
        func="f", queue="q", success=True, duration=None, at=now - timedelta(minutes=30)
    )
    stats.count_run(
        func="f", queue="q", success=False, duration=None, at=now - timedelta(minutes=30)
    )
    stats.count_run(func="f", queue="q", success=True, duration=None, at=now - timedelta(hours=2))
    status, body = get(client)
    assert status == 200
    assert body["queue"]["queued"] == 3
    assert 299 <= body["queue"]["oldest_queued_age_seconds"] <= 330
    assert body["dead"]["count"] == 1
    assert 7199 <= body["dead"]["oldest_age_seconds"] <= 7230
    assert body["last_hour"] == {"finished": 3, "succeeded": 2, "failed": 1}
    assert "secret-argument" not in str(body)


def test_running_jobs_show_progress_and_no_arguments(client) -> None:
    task_id = registry.enqueue("tests.progress", 40, on_commit=False)
    Job.objects.filter(task_id=task_id).update(
        state=Job.State.RUNNING,
        attempt=2,
        claimed_at=timezone.now() - timedelta(seconds=3),
        claimed_by="tablo@host:1",
        progress_done=10,
        progress_total=40,
        progress_message="step 10",
        progress_updated_at=timezone.now(),
    )
    idle = registry.enqueue("tests.echo", "top secret", on_commit=False)
    Job.objects.filter(task_id=idle).update(state=Job.State.RUNNING, claimed_at=timezone.now())
    _, body = get(client)
    running = {r["task_id"]: r for r in body["running"]}
    assert running[task_id]["job"] == "tests.progress"
    assert running[task_id]["attempt"] == 2
    assert running[task_id]["worker"] == "tablo@host:1"
    assert running[task_id]["progress"]["done"] == 10
    assert running[task_id]["progress"]["total"] == 40
    assert running[task_id]["progress"]["message"] == "step 10"
    assert running[idle]["progress"] is None
    assert "top secret" not in str(body)


def test_a_few_queries(client) -> None:
    registry.enqueue_many("tests.echo", [("a",)] * 20, on_commit=False)
    with CaptureQueriesContext(connection) as queries:
        get(client)
    # SELECT 1, then one bounded query per section (last_hour: two).
    assert len(queries.captured_queries) <= 10
    assert not any("payload" in q["sql"] for q in queries.captured_queries)


def test_503_when_the_database_does_not_answer(client, monkeypatch) -> None:
    def broken_cursor(*args, **kwargs):
        raise DatabaseError("connection refused by db.internal:5432 for user secret")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    status, body = get(client)
    assert status == 503
    assert body["database"] == {"status": "error", "error": "DatabaseError"}
    assert "secret" not in str(body)


def test_a_failing_section_is_reported_without_failing_the_check(client, monkeypatch) -> None:
    from jobs import health

    def broken(*, now):
        raise DatabaseError('relation "jobs_job" does not exist')

    monkeypatch.setattr(health, "ended_reports", broken)
    status, body = get(client)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["dead"] == body["cancelled"] == body["expired"] == {"error": "DatabaseError"}
    assert body["database"]["status"] == "ok"


def test_head_answers_like_get_for_uptime_monitors(client) -> None:
    response = client.head("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert client.post("/healthz").status_code == 405
