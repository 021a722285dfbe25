"""Snooze: a task raises or returns ``Snooze(seconds)`` to run again later; no attempt is
used, and the count of snoozes is kept on the row and shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from jobs.engine import nodes, registry, transitions
from jobs.engine.errors import Snooze
from jobs.engine.execute import run
from jobs.models import Job, JobAttempt
from tests.support import flow_jobs  # noqa: F401 (registers the jobs)
from tests.support.admin import url

QUEUE = "flow-snooze"


def test_snooze_takes_seconds_from_zero_up() -> None:
    assert Snooze(2).seconds == 2.0
    with pytest.raises(TypeError, match="Snooze takes a number of seconds"):
        Snooze("soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="from 0 up"):
        Snooze(-1)


@pytest.mark.parametrize("how", ["raise", "return"])
def test_a_raised_or_returned_snooze_is_the_outcome(how: str) -> None:
    def task() -> Snooze:
        if how == "raise":
            raise Snooze(3)
        return Snooze(3)

    outcome = run({"id": "x", "func": task}, timeout=None)
    assert (outcome.success, outcome.snooze) == (False, 3.0)


@pytest.mark.django_db
def test_a_snooze_gives_the_attempt_back_and_counts_itself(admin_client: Client) -> None:
    task_id = registry.enqueue("tests.flow.steady", "/nonexistent", 0, on_commit=False)
    Job.objects.filter(task_id=task_id).update(queue=QUEUE)
    node = nodes.register(cluster=QUEUE, managed=False)
    for _ in range(5):
        [claimed] = transitions.claim(alias="default", queue=QUEUE, node=node, by="w", limit=1)
        attempt = transitions.start(alias="default", row_id=claimed.row_id, node=node)
        assert attempt == 1
        state = transitions.snooze(
            alias="default", row_id=claimed.row_id, attempt=attempt, restore=claimed.attempt,
            node=node, seconds=0,
        )  # fmt: skip
        assert state == Job.State.QUEUED
    job = Job.objects.get(task_id=task_id)
    assert (job.attempt, job.snoozes, job.owner, job.state) == (0, 5, None, Job.State.QUEUED)
    assert not JobAttempt.objects.filter(task_id=task_id).exists()
    page = admin_client.get(url("admin:jobs_queuedjob_change", job.id)).content.decode()
    assert '<td id="task-snoozes">5</td>' in page
    listed = admin_client.get(url("admin:jobs_queuedjob_changelist")).content.decode()
    assert "0 of 20<br><small>5 snoozes</small>" in listed


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_five_snoozes_on_a_real_node_use_no_attempt(worker_factory, tmp_path: Path) -> None:
    worker = worker_factory(Q_WORKERS="1")
    task_id = registry.enqueue("tests.flow.snoozer", str(tmp_path), 5)
    # After five snoozes the sixth run gives up for good: dead at its first attempt.
    worker.wait_until(
        lambda: Job.objects.filter(task_id=task_id, state=Job.State.DEAD).exists(),
        timeout=60,
        what="the sixth run",
    )
    job = Job.objects.get(task_id=task_id)
    assert (job.attempt, job.snoozes) == (1, 5)
    assert len(list(tmp_path.glob("snoozer.run.*"))) == 6
    [attempt] = JobAttempt.objects.filter(task_id=task_id)
    assert (attempt.attempt, attempt.error_type) == (1, "jobs.engine.errors.DoNotRetry")
    assert worker.stop() == 0
