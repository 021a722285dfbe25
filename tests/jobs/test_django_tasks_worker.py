"""jobs.django_tasks end to end: ``@task`` functions run by real ``qcluster`` processes.

Retries with backoff ending FAILED with every error (read from this process and from a
fresh one), the signals sent in the worker process, a rolled-back enqueue that never
runs, and kill -9 during 1,000 runs losing none.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from django.db import connection, transaction
from django.tasks import TaskResultStatus

from jobs.models import Job, JobAttempt, WorkerNode
from tests.reliability.jobs import EFFECT_TABLE_SQL
from tests.support import django_tasks as tasks
from tests.support import jobtable
from tests.support.cluster import BASE_DIR, worker_env
from tests.support.runtime import log_events
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

READ_RESULT = """
import json, sys
import django
django.setup()
from tests.support import django_tasks
result = django_tasks.always_fails.get_result(sys.argv[1])
print(json.dumps({
    "status": result.status,
    "errors": [e.exception_class_path for e in result.errors],
    "tracebacks": [e.traceback for e in result.errors],
    "worker_ids": result.worker_ids,
    "args": result.args,
    "finished": result.finished_at.isoformat(),
}))
"""


def test_retries_with_backoff_end_failed_with_every_error(worker_factory) -> None:
    worker = worker_factory(JOBS_LOG_SUCCESSES="true")  # Django's INFO lines per attempt
    result = tasks.always_fails.enqueue("disk full")
    dead = Job.objects.filter(task_id=result.id, state=Job.State.DEAD)
    wait_until(dead.exists, timeout=60, what="the task to be dead")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class for e in result.errors] == [ValueError] * 3
    assert all(e.traceback.endswith("ValueError: disk full\n") for e in result.errors)
    assert len(result.worker_ids) == 3
    # Its worker processes, by pid (the node forks them).
    children = {str(p.pid) for p in psutil.Process(worker.pid).children()}
    assert {w.rpartition(":")[2] for w in result.worker_ids} <= children
    history = list(JobAttempt.objects.filter(task_id=result.id).order_by("attempt"))
    assert (history[1].started_at - history[0].finished_at).total_seconds() >= 0.2
    assert (history[2].started_at - history[1].finished_at).total_seconds() >= 0.4

    # From a process that never saw the task: the same result.
    done = subprocess.run(
        [sys.executable, "-c", READ_RESULT, result.id],
        cwd=BASE_DIR,
        env=worker_env(LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    read = json.loads(done.stdout.strip().splitlines()[-1])
    assert read["status"] == "FAILED"
    assert read["errors"] == ["builtins.ValueError"] * 3
    assert read["worker_ids"] == result.worker_ids
    assert read["args"] == ["disk full"]
    assert read["finished"] == result.finished_at.isoformat()

    # Django's own receivers logged the signals in the worker process, per attempt.
    logged = [e for e in log_events(worker.log()) if result.id in str(e.get("event"))]
    # Per attempt (two worker processes may write their lines out of order).
    states = {
        attempt: [e["event"].rpartition("state=")[2] for e in logged if e["attempt"] == attempt]
        for attempt in (1, 2, 3)
    }
    assert states == {1: ["RUNNING", "READY"], 2: ["RUNNING", "READY"], 3: ["RUNNING", "FAILED"]}
    assert {e["pid"] for e in logged} <= {int(w.rpartition(":")[2]) for w in result.worker_ids}
    assert worker.stop() == 0


def test_a_task_enqueued_in_a_rolled_back_transaction_never_runs(
    worker_factory, tmp_path: Path
) -> None:
    rolled_back, after = tmp_path / "rolled-back", tmp_path / "after"

    class Rollback(Exception):
        pass

    def enqueue_then_roll_back() -> str:
        with transaction.atomic():
            task_id = tasks.touch.enqueue(str(rolled_back)).id
            raise Rollback(task_id)

    with pytest.raises(Rollback) as raised:
        enqueue_then_roll_back()
    # Enqueued after it, at the same priority: a worker takes it later.
    later = tasks.touch.enqueue(str(after))
    worker = worker_factory()
    wait_until(
        lambda: tasks.touch.get_result(later.id).status == TaskResultStatus.SUCCESSFUL,
        timeout=60,
        what="the task enqueued after the rollback",
    )
    assert after.exists()
    assert not rolled_back.exists()
    assert not Job.objects.filter(task_id=raised.value.args[0]).exists()
    assert worker.stop() == 0


# -- kill -9 ------------------------------------------------------------------------
@pytest.fixture
def effects() -> Iterator[dict[str, int]]:
    """The ``rel_effect`` table: key -> times the effect was applied (read with ``runs()``)."""
    with connection.cursor() as cursor:
        cursor.execute(EFFECT_TABLE_SQL)
    yield {}
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE rel_effect")


def runs() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, runs FROM rel_effect")
        return dict(cursor.fetchall())


def test_kill_9_during_1000_task_runs_loses_none(worker_factory, effects) -> None:
    rng = random.Random(os.getpid())
    with transaction.atomic():
        keys = {tasks.record_effect.enqueue(f"k{i:04d}", 0.01).id: f"k{i:04d}" for i in range(1000)}
    held_keys: set[str] = set()
    victim = worker_factory()
    for _ in range(2):
        goal = len(runs()) + rng.randint(40, 200)
        victim.wait_until(lambda goal=goal: len(runs()) >= goal, timeout=90, what="progress")
        node = WorkerNode.objects.get(pid=victim.pid, stopped_at__isnull=True, dead_at__isnull=True)
        victim.kill()
        held = jobtable.held(node.id)
        # A task that ran and was not finished yet may run again: only those.
        held_keys |= {keys[t] for t in jobtable.task_ids(held) if t in keys}
        victim = worker_factory()
        victim.wait_until(
            lambda held=held: jobtable.started_again(held), timeout=60, what="held tasks"
        )
    victim.wait_until(lambda: len(runs()) == len(keys), timeout=180, what="every effect")
    applied = runs()
    assert set(applied) == set(keys.values())  # none lost
    assert {key for key, n in applied.items() if n > 1} <= held_keys
    wait_until(
        lambda: not Job.objects.filter(task_id__in=list(keys)).exists(),
        timeout=30,
        what="every task finished",
    )
    sample = random.Random(1).sample(sorted(keys), 20)
    for task_id in sample:
        result = tasks.record_effect.get_result(task_id)
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == keys[task_id]
    assert victim.stop() == 0
