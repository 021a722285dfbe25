"""Fault tests on a real qcluster: SIGTERM during a long task, poison tasks.

kill -9 of whole nodes is tests/reliability/test_delivery.py.

Each task applies an idempotent effect keyed by its argument (``tests.reliability.jobs``),
so "none lost" is checked on the effects, whatever the broker keeps internally.
"""

from __future__ import annotations

import signal
import time

import pytest
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from jobs.models import Job, JobAttempt
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORD = "tests.reliability.jobs.record"
# A short global timeout: a poison task's attempts end within the test.
FAST = {"Q_TIMEOUT": "5", "Q_WORKERS": "2"}


def wait_for(predicate, *, timeout: float, what: str, worker=None) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.log()[-4000:]}")
        time.sleep(0.1)
    tail = worker.log()[-4000:] if worker is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def test_sigterm_lets_a_long_task_finish_and_commit(worker_factory, effects) -> None:
    worker = worker_factory(**FAST, LOG_LEVEL="DEBUG")  # "task started" is DEBUG
    task_id = async_task(RECORD, "long", 4.0)
    wait_for(
        lambda: task_id in {e["task_id"] for e in log_events(worker.log(), "task started")},
        timeout=30, what="the long task to start", worker=worker,
    )  # fmt: skip
    assert effects.all() == {}
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM, timeout=60) == 0
    assert time.monotonic() - started < 30
    assert effects.all() == {"long": 1}
    # Finished, and nothing left running; scheduled jobs enqueued meanwhile may wait.
    assert not Job.objects.filter(task_id=task_id).exists()
    assert get_broker().lock_size() == 0


def enqueue_bystanders(prefix: str, n: int = 20) -> list[str]:
    keys = [f"{prefix}{i}" for i in range(n)]
    for key in keys:
        async_task(RECORD, key)
    return keys


def dead_job(task_id: str) -> Job | None:
    return Job.objects.filter(task_id=task_id, state=Job.State.DEAD).first()


def test_unreadable_payload_becomes_dead_and_others_run(
    worker_factory, effects, monkeypatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(Conf, "SECRET_KEY", "a-key-from-another-deployment-0123456789")
        poison = async_task(RECORD, "never-run")
    keys = enqueue_bystanders("u")
    worker = worker_factory(**FAST)
    wait_for(lambda: dead_job(poison) is not None, timeout=60, what="a dead row", worker=worker)
    wait_for(lambda: set(keys) <= set(effects.all()), timeout=60, what="others", worker=worker)
    job = dead_job(poison)
    assert job.last_error_type == "UnreadablePayload"
    assert "SECRET_KEY" in job.last_error_message
    assert "never-run" not in effects.all()
    assert worker.process.poll() is None
    assert worker.stop() == 0


def test_missing_function_becomes_dead_with_a_clear_error(worker_factory, effects) -> None:
    poison = async_task("tests.reliability.jobs.no_such_task", "x")
    keys = enqueue_bystanders("m")
    worker = worker_factory(**FAST)
    wait_for(lambda: dead_job(poison) is not None, timeout=60, what="a dead row", worker=worker)
    wait_for(lambda: set(keys) <= set(effects.all()), timeout=60, what="others", worker=worker)
    job = dead_job(poison)
    assert "no_such_task" in job.last_error_message
    assert job.attempt == 1, "a missing function is not retried"
    assert worker.stop() == 0


def test_task_that_kills_its_worker_process_ends_dead(worker_factory, effects, settings) -> None:
    settings.JOBS_DEFAULT_MAX_ATTEMPTS = 2
    poison = async_task("tests.reliability.jobs.kill_own_process", timeout=2)
    keys = enqueue_bystanders("x")
    worker = worker_factory(**FAST)
    wait_for(
        lambda: dead_job(poison) is not None,
        timeout=2 * (2 + 5) + 60, what="the poison task dead after 2 attempts", worker=worker,
    )  # fmt: skip
    wait_for(lambda: set(keys) <= set(effects.all()), timeout=60, what="others", worker=worker)
    job = dead_job(poison)
    assert job.attempt == 2
    assert job.last_error_type == "WorkerLost"
    assert "worker process" in job.last_error_message
    attempts = JobAttempt.objects.filter(task_id=poison).order_by("attempt")
    assert [a.error_type for a in attempts] == ["WorkerLost", "WorkerLost"]
    # The cluster replaced its dead worker process and kept serving.
    assert log_events(worker.log(), "worker process died")
    after = enqueue_bystanders("y", 5)
    wait_for(lambda: set(after) <= set(effects.all()), timeout=60, what="later", worker=worker)
    assert worker.stop() == 0
