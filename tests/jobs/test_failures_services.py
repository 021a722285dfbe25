from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
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
    from jobs import registry

    assert registry.get("jobs.prune_history").path == "jobs.failures.tasks.prune_history_job"
