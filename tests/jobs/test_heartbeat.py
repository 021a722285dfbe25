from __future__ import annotations

import logging
import os
import socket

import pytest
from django_q.conf import Conf

from jobs import tasks
from jobs.engine import context, registry
from jobs.models import Job, WorkerHeartbeat
from jobs.tasks import HEARTBEAT_UNIQUE_KEY
from tests.support import runtime as support
from tests.support.runtime import events

pytestmark = pytest.mark.django_db


def test_heartbeat_logs_and_records_the_cluster(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with support.conf(SYNC=True):
        task_id = registry.enqueue("jobs.heartbeat", on_commit=False)
    [beat_event] = events(caplog, "worker heartbeat")
    assert beat_event["task_id"] == task_id
    assert beat_event["attempt"] == 1
    assert beat_event["cluster"] == Conf.CLUSTER_NAME
    assert beat_event["host"] == socket.gethostname()
    assert beat_event["pid"] == os.getpid()
    beat = WorkerHeartbeat.objects.get(cluster=Conf.CLUSTER_NAME)
    assert (beat.task_id, beat.pid, beat.host) == (task_id, os.getpid(), socket.gethostname())
    assert beat.started_at == beat.last_beat_at


def test_a_later_beat_updates_the_same_row() -> None:
    with support.conf(SYNC=True):
        registry.enqueue("jobs.heartbeat", on_commit=False)
        first = WorkerHeartbeat.objects.get().last_beat_at
        second_id = registry.enqueue("jobs.heartbeat", on_commit=False)
    beat = WorkerHeartbeat.objects.get()
    assert beat.last_beat_at > first
    assert beat.started_at == first
    assert beat.task_id == second_id


def test_only_one_heartbeat_waits_in_the_queue() -> None:
    first = registry.enqueue("jobs.heartbeat", on_commit=False)
    assert registry.enqueue("jobs.heartbeat", on_commit=False) == first
    assert Job.objects.get().unique_key == HEARTBEAT_UNIQUE_KEY


def test_a_starting_worker_asks_for_a_heartbeat(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(context, "current_node_id", lambda: 1)
    tasks.on_post_spawn(sender="django_q", proc_name="Process-1")
    tasks.on_post_spawn(sender="django_q", proc_name="Process-2")
    job = Job.objects.get()
    assert job.job_name == "jobs.heartbeat"
    started = events(caplog, "worker started")
    assert [e["heartbeat_task_id"] for e in started] == [job.task_id, job.task_id]


def test_a_worker_starts_when_its_heartbeat_cannot_be_enqueued(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "current_node_id", lambda: 1)

    def database_away(*args: object, **kwargs: object) -> str:
        raise RuntimeError("database away")

    monkeypatch.setattr(tasks, "enqueue", database_away)
    tasks.on_post_spawn(sender="django_q", proc_name="Process-1")
    assert events(caplog, "start-up heartbeat not enqueued")
    assert not Job.objects.exists()


def test_sync_runs_outside_a_cluster_ask_for_no_heartbeat() -> None:
    assert context.current_node_id() is None
    tasks.on_post_spawn(sender="django_q", proc_name="MainProcess")
    assert not Job.objects.exists()
