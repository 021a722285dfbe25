from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.db import connection, connections, transaction
from django.utils import timezone

from jobs.failures import services
from jobs.failures.selectors import failed_jobs, task_attempts
from jobs.failures.tasks import prune_history
from jobs.models import Job, JobAttempt
from tests.support.failures import failed_rows


@pytest.mark.django_db
def test_retry_logs_each_task_for_the_user(admin_user) -> None:
    rows = failed_rows(3)
    assert services.retry_failed(queryset=Job.objects.all(), user=admin_user) == 3
    entries = LogEntry.objects.filter(user=admin_user, action_flag=CHANGE)
    assert sorted(int(e.object_id) for e in entries) == [r.id for r in rows]
    assert entries[0].change_message.startswith("Retried")


@pytest.mark.django_db
def test_retry_leaves_running_and_queued_tasks_alone() -> None:
    _dead, running, queued = failed_rows(3)
    Job.objects.filter(id=running.id).update(state=Job.State.RUNNING)
    Job.objects.filter(id=queued.id).update(state=Job.State.QUEUED, max_attempts=99)
    assert services.retry_failed(queryset=Job.objects.all()) == 1
    assert Job.objects.get(id=running.id).state == Job.State.RUNNING
    assert Job.objects.get(id=queued.id).max_attempts == 99


@pytest.mark.django_db
def test_retry_budget_uses_the_job_spec_and_default(settings) -> None:
    settings.JOBS_DEFAULT_MAX_ATTEMPTS = 4
    [registered] = failed_rows(1, attempt=3)
    [unregistered] = failed_rows(1, func="tests.support.failures.unregistered_failure", attempt=7)
    services.retry_failed(queryset=Job.objects.all())
    assert Job.objects.get(id=registered.id).max_attempts == 3 + 3
    assert Job.objects.get(id=unregistered.id).max_attempts == 7 + 4


@pytest.mark.django_db
def test_retry_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "BATCH", 2)
    failed_rows(5)
    assert services.retry_failed(queryset=Job.objects.all()) == 5
    assert Job.objects.filter(state=Job.State.QUEUED).count() == 5


@pytest.mark.django_db
def test_discard_logs_deletions(admin_user) -> None:
    failed_rows(2)
    assert services.discard_failed(queryset=Job.objects.all(), user=admin_user) == 2
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 2
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_selectors_order_and_attempts() -> None:
    now = timezone.now()
    [old] = failed_rows(1, failed_at=now - timedelta(days=1))
    [new] = failed_rows(1, failed_at=now)
    assert list(failed_jobs()) == [new, old]
    assert list(failed_jobs(since=now - timedelta(hours=1))) == [new]
    assert [a.attempt for a in task_attempts(task_id=new.task_id)] == [3]


@pytest.mark.django_db
def test_prune_keeps_recent_and_dead_task_history(settings) -> None:
    settings.JOBS_HISTORY_RETENTION_DAYS = 14
    [dead] = failed_rows(1)
    old = timezone.now() - timedelta(days=20)
    JobAttempt.objects.update(finished_at=old)
    finished_task = JobAttempt.objects.create(
        task_id="a" * 32, attempt=1, func="f", finished_at=old
    )
    recent = JobAttempt.objects.create(task_id="b" * 32, attempt=1, func="f")
    assert prune_history() == 1
    assert not JobAttempt.objects.filter(id=finished_task.id).exists()
    assert JobAttempt.objects.filter(id=recent.id).exists()
    assert JobAttempt.objects.filter(task_id=dead.task_id).exists()


def test_prune_job_is_registered() -> None:
    from jobs.engine import registry

    assert registry.get("jobs.prune_history").path == "jobs.failures.tasks.prune_history_job"


def _wait_for_a_lock_waiter(deadline_seconds: float = 10.0) -> None:
    """PostgreSQL: until some backend waits on a row lock. SQLite's writer lock makes
    the order irrelevant there (the retry's transaction starts after the claim's)."""
    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the retry never waited for the claimed row")


@pytest.mark.django_db(transaction=True)
def test_retry_does_not_count_a_row_a_worker_claims_meanwhile() -> None:
    dead, claimed = failed_rows(2)
    locked, release = threading.Event(), threading.Event()
    result: list[int] = []

    def claim_and_hold() -> None:  # what a worker's claim (transitions.claim) does, held open
        try:
            with transaction.atomic():
                Job.objects.filter(id=claimed.id).update(state=Job.State.RUNNING)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    def retry() -> None:
        try:
            result.append(services.retry_failed(queryset=Job.objects.all()))
        finally:
            connections.close_all()

    holder = threading.Thread(target=claim_and_hold)
    holder.start()
    assert locked.wait(10)
    retrier = threading.Thread(target=retry)
    retrier.start()
    _wait_for_a_lock_waiter()
    release.set()
    holder.join(10)
    retrier.join(30)
    assert result == [1]
    assert Job.objects.get(id=claimed.id).state == Job.State.RUNNING
    assert Job.objects.get(id=dead.id).state == Job.State.QUEUED
