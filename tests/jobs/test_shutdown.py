"""SIGTERM to the main qcluster process: the task in flight finishes and commits, exit 0."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from django_q.brokers import get_broker

from jobs.engine import registry
from jobs.models import WorkerHeartbeat
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_running_task_finish_and_exits_0(
    worker_factory, tmp_path: Path, sig: int
) -> None:
    marker = tmp_path / "slow-task-done"
    worker = worker_factory(Q_WORKERS="1", LOG_LEVEL="DEBUG")  # "task started" is DEBUG
    task_id = registry.enqueue("tests.slow", 3, str(marker))
    worker.wait_until(
        lambda: any(e.get("task_id") == task_id for e in log_events(worker.log(), "task started")),
        timeout=15,
        what="the slow task to start",
    )
    assert not marker.exists()

    worker.process.send_signal(sig)
    # A stopping node takes nothing new.
    worker.wait_for_log("stopping: workers finish the task in hand", timeout=10)
    assert not marker.exists()  # still running while the cluster stops
    late_id = registry.enqueue("tests.echo", "late")
    returncode = worker.stop(timeout=30)

    assert returncode == 0
    assert marker.read_text() == "done"
    # The task's own write was committed before the process exited.
    assert WorkerHeartbeat.objects.filter(cluster=f"tests.slow:{marker}").exists()
    finished = [e for e in log_events(worker.log(), "task finished") if e["task_id"] == task_id]
    assert finished[0]["success"] is True
    assert finished[0]["duration_ms"] >= 3000
    assert not any(e.get("task_id") == late_id for e in log_events(worker.log(), "task started"))
    assert get_broker().queue_size() >= 1
