"""End to end with a real qcluster: retries with backoff, dead tasks, operator retry."""

from __future__ import annotations

import json
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_q.brokers import get_broker
from django_q.tasks import async_task

from jobs.engine import registry
from jobs.engine.rows import job_row_from_task
from jobs.models import Job, JobAttempt
from tests.support.failures import make_task
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# attempt**4 * 0.001 s: 0.001 s, then 0.016 s, and 0.26 s and 0.63 s for the fourth
# and fifth attempts after the operator's retry; the whole curve in under a second.
FAST_BACKOFF = {"JOBS_BACKOFF_SCALE": "0.001"}


def wait_for_state(worker, task_id: str, state: str, *, attempt: int, timeout: float = 30) -> Job:
    worker.wait_until(
        lambda: Job.objects.filter(task_id=task_id, state=state, attempt=attempt).exists(),
        timeout=timeout,
        what=f"task {task_id} {state} at attempt {attempt}",
    )
    return Job.objects.get(task_id=task_id)


def failed_list() -> list[dict]:
    out = StringIO()
    call_command("list_failed_jobs", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_failing_task_retries_with_growing_delays_then_dies_then_admin_retry(
    worker_factory, admin_client: Client
) -> None:
    worker = worker_factory(**FAST_BACKOFF)
    task_id = registry.enqueue("tests.always_fails", "e2e", on_commit=False)

    job = wait_for_state(worker, task_id, Job.State.DEAD, attempt=3)
    assert job.max_attempts == 3
    history = list(JobAttempt.objects.filter(task_id=task_id).order_by("attempt"))
    assert [(a.attempt, a.succeeded, a.error_type, a.error_message) for a in history] == [
        (n, False, "RuntimeError", "boom e2e") for n in (1, 2, 3)
    ]
    assert all(a.pid and a.host and a.cluster and a.started_at for a in history)
    assert all("Traceback (most recent call last)" in a.traceback for a in history)
    worker.wait_until(
        lambda: (
            len([e for e in log_events(worker.log(), "task failed") if e["task_id"] == task_id])
            >= 3
        ),
        timeout=10,
        what="three task failed events",
    )
    # Two worker processes share the log: attempt 2 may run and log on the other one
    # before the first has written its line (the retry is due 1 ms later).
    events = sorted(
        (e for e in log_events(worker.log(), "task failed") if e["task_id"] == task_id),
        key=lambda e: e["attempt"],
    )
    assert [(e["attempt"], e["max_attempts"], e["will_retry"]) for e in events] == [
        (1, 3, True),
        (2, 3, True),
        (3, 3, False),
    ]
    assert events[0]["job"] == "tests.always_fails"
    assert events[0]["func"] == "tests.support.failures.always_fails"
    assert events[0]["error_type"] == "RuntimeError"
    assert events[0]["error_message"] == "boom e2e"
    assert "RuntimeError: boom e2e" in events[0]["traceback"]
    # The waits grow (attempt**4 * 0.001 s, +/-10%), and no attempt starts before its time.
    retry_at = [datetime.fromisoformat(e["retry_at"]) for e in events[:2]]
    delays = [(retry_at[i] - history[i].finished_at).total_seconds() for i in (0, 1)]
    assert 0.0009 <= delays[0] <= 0.0011
    assert 0.0144 <= delays[1] <= 0.0176
    assert history[1].started_at >= retry_at[0]
    assert history[2].started_at >= retry_at[1]
    assert events[2]["retry_at"] is None

    [listed] = failed_list()
    assert (listed["task_id"], listed["state"], listed["attempt"]) == (task_id, "dead", 3)

    # An operator retries it from the admin: a fresh budget of 3, the history kept.
    response = admin_client.post(reverse("admin:jobs_failedjob_retry", args=[job.id]))
    assert response.status_code == 302
    job = wait_for_state(worker, task_id, Job.State.DEAD, attempt=6)
    assert job.max_attempts == 6
    assert list(
        JobAttempt.objects.filter(task_id=task_id)
        .order_by("attempt")
        .values_list("attempt", flat=True)
    ) == [1, 2, 3, 4, 5, 6]
    assert worker.stop() == 0


def test_final_failures_are_dead_at_once_and_never_dropped(worker_factory) -> None:
    worker = worker_factory(**FAST_BACKOFF)
    gives_up = registry.enqueue("tests.gives_up", on_commit=False)
    missing = async_task("tests.support.failures.no_such_function")
    unreadable = make_task("tests.support.failures.succeeds")
    job_row_from_task(unreadable, queue=get_broker().list_key, payload="not-signed").save()

    for task_id in (gives_up, missing, unreadable["id"]):
        wait_for_state(worker, task_id, Job.State.DEAD, attempt=1)
    by_task = {row["task_id"]: row for row in failed_list()}
    assert by_task[gives_up]["error_type"] == "jobs.engine.errors.DoNotRetry"
    assert by_task[gives_up]["max_attempts"] == 5  # gave up before the budget ran out
    assert by_task[missing]["error_message"] == (
        "Function tests.support.failures.no_such_function is not defined"
    )
    assert by_task[unreadable["id"]]["error_type"] == "UnreadablePayload"
    assert worker.stop() == 0
