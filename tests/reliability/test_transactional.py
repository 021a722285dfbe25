"""Transactional jobs on real qcluster processes: writes and completion commit together."""

from __future__ import annotations

import json
import os
import random

import pytest
from django.db import transaction
from django_q.models import Failure, Success
from django_q.tasks import async_task

from jobs.models import Job, JobAttempt, WorkerNode
from tests.support import transactional as tx

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ledger(transactional_db):
    with tx.ledger_tables() as tables:
        yield tables


def test_kill_9_three_times_applies_each_transactional_task_exactly_once(
    worker_factory, ledger
) -> None:
    rng = random.Random(os.getpid())
    with transaction.atomic():
        keys = {
            async_task("tests.support.transactional.tx_record", f"k{i:04d}", 0.005)
            for i in range(1000)
        }
    held_total = 0
    worker = worker_factory()
    for _ in range(3):
        goal = len(ledger.keys()) + rng.randint(40, 200)
        worker.wait_until(lambda goal=goal: len(ledger.keys()) >= goal, timeout=90, what="progress")
        node = WorkerNode.objects.get(pid=worker.pid, stopped_at__isnull=True)
        worker.kill()
        held_total += Job.objects.filter(owner=node.id, state=Job.State.RUNNING).count()
        worker = worker_factory()

    worker.wait_until(lambda: not Job.objects.exists(), timeout=180, what="every task")
    lost = JobAttempt.objects.filter(error_type="WorkerLost").count()
    print(
        f"transactional kill -9 x3: held={held_total} worker_lost={lost} "
        f"effects={len(ledger.keys())} counter={ledger.counter()}"
    )
    assert held_total > 0  # the kills landed while tasks were claimed
    assert len(ledger.keys()) == 1000  # none lost
    assert ledger.counter() == 1000  # none applied twice
    assert Success.objects.filter(id__in=keys).count() == 1000  # one result each
    # No run hit the primary key of an effect already applied.
    other_failures = JobAttempt.objects.filter(succeeded=False).exclude(error_type="WorkerLost")
    assert list(other_failures.values_list("error_type", "error_message")) == []
    assert worker.stop() == 0


def test_a_raising_transactional_task_leaves_no_writes_and_is_retried(
    worker_factory, ledger, tmp_path
) -> None:
    hooks = tmp_path / "hooks.jsonl"
    worker = worker_factory(JOBS_BACKOFF_SCALE="0.01", API_TEST_LOG=str(hooks))
    task_id = async_task(
        "tests.support.transactional.tx_fails_once",
        "once",
        str(tmp_path / "m"),
        hook="tests.support.api_jobs.hook",
    )

    worker.wait_until(
        lambda: Success.objects.filter(id=task_id).exists(), timeout=60, what="success"
    )
    # The history is closed in the task's own transaction.
    worker.wait_until(
        lambda: JobAttempt.objects.filter(task_id=task_id, succeeded=True).exists(),
        timeout=30,
        what="the succeeded attempt",
    )
    attempts = list(JobAttempt.objects.filter(task_id=task_id).order_by("attempt"))
    assert [(a.attempt, a.succeeded, a.error_type) for a in attempts] == [
        (1, False, "RuntimeError"),
        (2, True, ""),
    ]
    # The first run's writes were rolled back: applied once, by the second run.
    assert ledger.keys() == {"once"}
    assert ledger.counter() == 1
    # One result, replaced by the run that committed; the hook once per finished attempt.
    worker.wait_until(
        lambda: hooks.exists() and len(hooks.read_text().splitlines()) == 2,
        timeout=30,
        what="both hooks",
    )
    calls = [json.loads(line) for line in hooks.read_text().splitlines()]
    assert [(c["id"], c["success"]) for c in calls] == [(task_id, False), (task_id, True)]
    assert calls[1]["result"] == "once"
    assert Success.objects.get(id=task_id).result == "once"


def test_a_timed_out_transactional_task_leaves_no_writes(worker_factory, ledger) -> None:
    worker = worker_factory()
    task_id = async_task("tests.support.transactional.tx_times_out", "slow")

    worker.wait_until(
        lambda: Failure.objects.filter(id=task_id).exists(), timeout=60, what="failure"
    )
    assert Job.objects.get(task_id=task_id).state == Job.State.DEAD
    assert ledger.keys() == set()
    assert ledger.counter() == 0
