"""Transactional jobs on real qcluster processes: writes and completion commit together."""

from __future__ import annotations

import json
import os
import random
import time

import pytest
from django.db import connection, transaction
from django_q.models import Failure, Success
from django_q.tasks import async_task

from jobs.models import Job, JobAttempt, WorkerNode
from tests.support import transactional as tx

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Ledger:
    """The ``tx_effect`` rows and the ``tx_counter`` value of the test database."""

    def keys(self) -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT key FROM tx_effect")
            return {row[0] for row in cursor.fetchall()}

    def counter(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT n FROM tx_counter WHERE id = 1")
            return cursor.fetchone()[0]


@pytest.fixture
def ledger(transactional_db):
    with connection.cursor() as cursor:
        for sql in tx.TABLES_SQL:
            cursor.execute(sql)
        cursor.execute("DELETE FROM tx_effect")
        cursor.execute("DELETE FROM tx_counter")
        cursor.execute("INSERT INTO tx_counter (id, n) VALUES (1, 0)")
    yield Ledger()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE tx_effect")
        cursor.execute("DROP TABLE tx_counter")


def wait_for(predicate, *, timeout: float, what: str, workers=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited:\n{worker.log()[-4000:]}")
        time.sleep(0.05)
    tails = "\n".join(w.log()[-3000:] for w in workers)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def test_kill_9_three_times_applies_each_transactional_task_exactly_once(
    worker_factory, ledger
) -> None:
    rng = random.Random(os.getpid())
    with transaction.atomic():
        keys = {async_task("tests.support.transactional.tx_record", f"k{i:04d}", 0.005)
                for i in range(1000)}  # fmt: skip
    held_total = 0
    worker = worker_factory()
    for _ in range(3):
        goal = len(ledger.keys()) + rng.randint(40, 200)
        wait_for(lambda goal=goal: len(ledger.keys()) >= goal, timeout=90, what="progress",
                 workers=[worker])  # fmt: skip
        node = WorkerNode.objects.get(pid=worker.pid, stopped_at__isnull=True)
        worker.kill()
        held_total += Job.objects.filter(owner=node.id, state=Job.State.RUNNING).count()
        worker = worker_factory()

    wait_for(lambda: not Job.objects.exists(), timeout=180, what="every task", workers=[worker])
    lost = JobAttempt.objects.filter(error_type="WorkerLost").count()
    print(f"transactional kill -9 x3: held={held_total} worker_lost={lost} "
          f"effects={len(ledger.keys())} counter={ledger.counter()}")  # fmt: skip
    assert held_total > 0  # the kills landed while tasks were claimed
    assert len(ledger.keys()) == 1000  # none lost
    assert ledger.counter() == 1000  # none applied twice
    assert Success.objects.filter(id__in=keys).count() == 1000  # one result each
    # No run hit the primary key of an effect already applied.
    assert not JobAttempt.objects.filter(succeeded=False).exclude(error_type="WorkerLost").exists()
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

    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=60, what="success",
             workers=[worker])  # fmt: skip
    # The monitor closes the history after the worker committed the result.
    wait_for(lambda: JobAttempt.objects.filter(task_id=task_id, succeeded=True).exists(),
             timeout=30, what="the succeeded attempt", workers=[worker])  # fmt: skip
    attempts = list(JobAttempt.objects.filter(task_id=task_id).order_by("attempt"))
    assert [(a.attempt, a.succeeded, a.error_type) for a in attempts] == [
        (1, False, "RuntimeError"),
        (2, True, ""),
    ]
    # The first run's writes were rolled back: applied once, by the second run.
    assert ledger.keys() == {"once"}
    assert ledger.counter() == 1
    # One result, and its hook called once, for the run that committed.
    wait_for(hooks.exists, timeout=30, what="the hook", workers=[worker])
    calls = [json.loads(line) for line in hooks.read_text().splitlines()]
    assert [(c["id"], c["success"], c["result"]) for c in calls] == [(task_id, True, "once")]
    assert Success.objects.get(id=task_id).result == "once"


def test_a_timed_out_transactional_task_leaves_no_writes(worker_factory, ledger) -> None:
    worker = worker_factory()
    task_id = async_task("tests.support.transactional.tx_times_out", "slow")

    wait_for(lambda: Failure.objects.filter(id=task_id).exists(), timeout=60, what="failure",
             workers=[worker])  # fmt: skip
    assert Job.objects.get(task_id=task_id).state == Job.State.DEAD
    assert ledger.keys() == set()
    assert ledger.counter() == 0
