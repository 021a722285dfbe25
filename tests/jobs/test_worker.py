"""jobs.engine.worker: a worker process's loop, one step at a time, on the real database.

Each step is called directly, as ``serve`` calls it: ``claim`` takes ready tasks,
``run_next`` starts and runs one, ``finish`` writes the batch of successes,
``give_back`` returns what was claimed and not started, ``wait`` sleeps until a task
may be ready, ``close`` ends it all. On PostgreSQL the start of a non-transactional
task is written by a thread (``jobs.engine.marks``) while the task runs; on SQLite
the worker writes it before; where that shows, the expectation follows the vendor.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.utils import timezone
from django_q.models import Failure, Success, Task
from django_q.signals import post_execute, pre_execute
from django_q.tasks import async_task

from jobs.engine import context, failing, nodes, registry, transitions
from jobs.engine import worker as worker_module
from jobs.engine.broker import DatabaseBroker
from jobs.engine.execute import Outcome
from jobs.engine.worker import Worker
from jobs.models import Job, JobAttempt
from tests.support import failures, jobtable
from tests.support.broker import noop, touch
from tests.support.waiting import wait_until

QUEUE = "worker-test"

pytestmark = pytest.mark.django_db(transaction=True)

POSTGRESQL = "postgresql"


# -- tasks the worker runs (imported by path from the payload) -----------------------
def returns(value: Any) -> Any:
    return value


def slow(seconds: float) -> None:
    time.sleep(seconds)  # the workload: slower than a quick task


def sleeps_past_its_timeout() -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.01)


def waits_for_its_start() -> tuple[int, int]:
    """Its own row's (attempt, owner) once its start is written (waits at most 5 s)."""
    started = Job.objects.filter(id=context.current_run().row_id, started_at__isnull=False)
    wait_until(started.exists, timeout=5, what="the task's start to be written")
    return started.values_list("attempt", "owner").get()


# -- fixtures and helpers ------------------------------------------------------------
def enqueue(func: object, *args: Any, **options: Any) -> str:
    """``async_task`` on this file's queue; the task id."""
    return async_task(func, *args, broker=DatabaseBroker(list_key=QUEUE), **options)


def run_claimed(worker: Worker) -> list[Outcome | None]:
    """Run every task the worker holds, as ``serve`` does between two claims."""
    outcomes = []
    while worker.claimed:
        outcomes.append(worker.run_next())
    return outcomes


def row(task_id: str) -> dict[str, Any]:
    """The fields of a task's queue row that a claim, a start and a give-back change."""
    return (
        Job.objects.filter(task_id=task_id)
        .values("state", "attempt", "owner", "claimed_by", "started_at")
        .get()
    )


def ready() -> dict[str, Any]:
    """A never-started task's row, ready to claim."""
    return {
        "state": Job.State.QUEUED,
        "attempt": 0,
        "owner": None,
        "claimed_by": "",
        "started_at": None,
    }


@pytest.fixture
def make_worker() -> Iterator[Callable[..., Worker]]:
    """Workers of this process's node on ``QUEUE``; each closed at teardown (its marks
    thread and LISTEN connection with it)."""
    made: list[Worker] = []

    def make(**options: Any) -> Worker:
        worker = Worker(queue=QUEUE, node=jobtable.node(QUEUE), **options)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


@pytest.fixture
def worker(make_worker: Callable[..., Worker]) -> Worker:
    return make_worker()


@pytest.fixture
def announced() -> Iterator[list[dict[str, Any]]]:
    """What each ``post_execute`` saw when it was sent."""
    seen: list[dict[str, Any]] = []

    def receiver(sender, task, **kwargs) -> None:
        seen.append(
            {
                "id": task["id"],
                "success": task["success"],
                "result": task["result"],
                "in_transaction": connection.in_atomic_block,
                "queued": Job.objects.filter(task_id=task["id"]).exists(),
                "saved": Task.objects.filter(id=task["id"]).exists(),
            }
        )

    post_execute.connect(receiver, dispatch_uid="test-worker-announced")
    yield seen
    post_execute.disconnect(dispatch_uid="test-worker-announced")


@pytest.fixture
def finishes(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[int, int]]]:
    """The acks of each ``transitions.finish`` call the worker makes."""
    calls: list[list[tuple[int, int]]] = []
    original = transitions.finish

    def spy(alias, acks, tasks, **kwargs):
        calls.append(list(acks))
        return original(alias, acks, tasks, **kwargs)

    monkeypatch.setattr(transitions, "finish", spy)
    return calls


RESULT_LIMIT = 2_000


@pytest.fixture
def refuses_long_results() -> Iterator[None]:
    """The result table refuses a stored result longer than ``RESULT_LIMIT`` characters,
    as a column may refuse a value: a CHECK on PostgreSQL, a trigger on SQLite."""
    table = Task._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == POSTGRESQL:
            cursor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT test_worker_short_result "
                f"CHECK (length(result) <= {RESULT_LIMIT})"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER test_worker_short_result BEFORE INSERT ON {table} "
                f"WHEN length(NEW.result) > {RESULT_LIMIT} "
                "BEGIN SELECT RAISE(ABORT, 'result too long'); END"
            )
    yield
    with connection.cursor() as cursor:
        if connection.vendor == POSTGRESQL:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT test_worker_short_result")
        else:
            cursor.execute("DROP TRIGGER test_worker_short_result")


# -- claim ---------------------------------------------------------------------------
def test_the_batch_grows_while_tasks_are_quick_and_falls_back_to_one_after_a_slow_one(
    make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loaded machine may take a noop past the 50 ms a quick task is allowed.
    monkeypatch.setattr(worker_module, "QUICK_SECONDS", 0.5)
    # Claimed in this order: 10 quick, 1 slow (the last of its claim), 3 quick.
    for i in range(10):
        enqueue(noop, i)
    enqueue(slow, 0.6)
    for i in range(3):
        enqueue(noop, i)
    worker = make_worker(bulk=4)

    sizes = []
    while claimed := worker.claim():
        sizes.append(claimed)
        assert all(outcome.success for outcome in run_claimed(worker))

    assert sizes == [1, 2, 4, 4, 1, 2]
    assert worker.finish() == 14
    assert not Job.objects.exists()
    assert Success.objects.count() == 14


def test_the_tasks_claimed_behind_a_long_task_go_back_while_it_runs_on_postgresql(
    make_worker: Callable[..., Worker],
) -> None:
    # The first task runs until its start is marked, which on PostgreSQL is what makes
    # it long; SQLite has no marks thread: the tasks behind wait for it.
    long_task = enqueue(waits_for_its_start)
    behind = [enqueue(noop, i) for i in range(3)]
    worker = make_worker(bulk=4)
    worker.batch = 4
    assert worker.claim() == 4

    outcome = worker.run_next()

    assert outcome is not None
    assert outcome.success, outcome.message
    if connection.vendor == POSTGRESQL:
        assert not worker.claimed
        assert [row(task_id) for task_id in behind] == [ready()] * 3
    else:
        assert [c.row_id for c in worker.claimed] == [
            Job.objects.get(task_id=task_id).id for task_id in behind
        ]
        assert all(outcome.success for outcome in run_claimed(worker))
    assert worker.finish() == (1 if connection.vendor == POSTGRESQL else 4)
    assert Success.objects.filter(id=long_task).exists()


def test_a_claim_takes_the_tasks_for_this_worker_and_leaves_them_unstarted(worker) -> None:
    first, second = enqueue(noop, 1), enqueue(noop, 2)

    assert worker.claim() == 1
    assert worker.claim() == 1
    assert worker.claim() == 0

    assert [c.row_id for c in worker.claimed] == [
        Job.objects.get(task_id=task_id).id for task_id in (first, second)
    ]
    for task_id in (first, second):
        assert row(task_id) == {
            "state": Job.State.RUNNING,
            "attempt": 0,  # an attempt counts only once the task starts
            "owner": worker.node,
            "claimed_by": worker.by,
            "started_at": None,
        }


def test_a_stopping_worker_claims_nothing(worker) -> None:
    task_id = enqueue(noop)
    worker.stop()

    assert worker.claim() == 0

    assert row(task_id) == ready()


def test_a_claim_that_hits_a_database_error_claims_nothing_and_the_next_one_works(
    make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = enqueue(noop)
    worker = make_worker(poll=0.01)
    calls = []

    def down_once(original):
        # Whichever claim statement the worker runs (the plain one, or the one that also
        # looks for tasks with limits) meets the outage.
        def claim(**kwargs):
            calls.append(kwargs["limit"])
            if len(calls) == 1:
                raise OperationalError("the database went away")
            return original(**kwargs)

        return claim

    monkeypatch.setattr(transitions, "claim", down_once(transitions.claim))
    monkeypatch.setattr(transitions, "claim_limited", down_once(transitions.claim_limited))

    assert worker.claim() == 0
    assert row(task_id) == ready()
    assert worker.claim() == 1
    assert len(calls) == 2


# -- run_next ------------------------------------------------------------------------
def test_a_task_handed_to_another_node_is_skipped_and_its_outcome_dropped(
    worker, announced, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    task_id = enqueue(touch, str(marker))
    assert worker.claim() == 1
    # A peer declares this node dead: the unstarted task is handed out again, and a
    # node of another process claims it.
    assert nodes.declare_dead(worker.node, why="test") == 1
    nodes.forget()
    [peer_claim] = jobtable.claim_unstarted(queue=QUEUE)
    peer = nodes.current_node_id()
    assert peer != worker.node

    outcome = worker.run_next()

    if connection.vendor == POSTGRESQL:
        # The task ran while its start mark was written; the mark found the row not
        # this node's, so the success is dropped at the finish.
        assert outcome is not None
        assert outcome.success is True
        assert marker.exists()
    else:
        # The start is written before the task runs: it finds the row not ours.
        assert outcome is None
        assert not marker.exists()
    assert worker.finish() == 0
    assert row(task_id) == {
        "state": Job.State.RUNNING,
        "attempt": 0,
        "owner": peer,
        "claimed_by": jobtable.BY,
        "started_at": None,
    }
    assert peer_claim.row_id == Job.objects.get(task_id=task_id).id
    assert not Task.objects.exists()
    assert not JobAttempt.objects.exists()
    assert announced == []


def test_a_failure_of_a_task_handed_to_another_node_is_not_recorded(worker, announced) -> None:
    task_id = enqueue(failures.always_fails, "late")
    assert worker.claim() == 1
    assert nodes.declare_dead(worker.node, why="test") == 1
    nodes.forget()
    jobtable.claim_unstarted(queue=QUEUE)
    peer = nodes.current_node_id()

    outcome = worker.run_next()

    if connection.vendor == POSTGRESQL:
        assert outcome is not None
        assert (outcome.success, outcome.message) == (False, "boom late")
    else:
        assert outcome is None
    assert (row(task_id)["owner"], row(task_id)["attempt"]) == (peer, 0)
    assert not JobAttempt.objects.exists()
    assert not Task.objects.exists()
    assert announced == []


def test_a_started_task_sees_its_own_row_started_while_it_runs(worker) -> None:
    # SQLite: the start is written before the task runs. PostgreSQL: a thread writes
    # it while the task runs; the task waits for it, so it must land meanwhile.
    assert (worker.marks is not None) is (connection.vendor == POSTGRESQL)
    task_id = enqueue(waits_for_its_start)
    assert worker.claim() == 1

    outcome = worker.run_next()

    assert outcome.success is True, outcome.message
    assert outcome.value == (1, worker.node)
    assert worker.finish() == 1
    assert Success.objects.get(id=task_id).result == (1, worker.node)


def test_successes_are_finished_in_one_batch_and_announced_after_the_commit(
    worker, announced, finishes
) -> None:
    ids = [enqueue(returns, n) for n in range(3)]
    while worker.claim():
        run_claimed(worker)

    # Run, not finished yet: rows still held, no result, nothing announced. On
    # PostgreSQL quick tasks are never marked started: their rows are finished as claimed.
    row_attempt = 0 if connection.vendor == POSTGRESQL else 1
    acks = [(Job.objects.get(task_id=task_id).id, row_attempt) for task_id in ids]
    assert Job.objects.filter(task_id__in=ids, state=Job.State.RUNNING).count() == 3
    assert not Task.objects.exists()
    assert announced == []

    assert worker.finish() == 3

    assert finishes == [acks]  # one transaction for the batch
    assert not Job.objects.exists()
    assert sorted(Success.objects.values_list("result", flat=True)) == [0, 1, 2]
    assert set(Success.objects.values_list("attempt_count", flat=True)) == {1}
    assert sorted(announced, key=lambda seen: seen["result"]) == [
        {
            "id": task_id,
            "success": True,
            "result": n,
            "in_transaction": False,
            "queued": False,
            "saved": True,
        }
        for n, task_id in enumerate(ids)
    ]
    assert worker.finish() == 0  # nothing twice


def test_a_failure_is_recorded_at_once(worker, announced, finishes) -> None:
    task_id = enqueue(failures.always_fails, "now")  # max_attempts 3
    assert worker.claim() == 1

    outcome = worker.run_next()

    assert (outcome.success, outcome.error_type, outcome.message) == (
        False,
        "RuntimeError",
        "boom now",
    )
    # Written before run_next returned: no finish needed.
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt, job.owner) == (Job.State.RETRYING, 1, None)
    assert (job.last_error_type, job.last_error_message) == ("RuntimeError", "boom now")
    assert job.run_at > job.last_failed_at  # its backoff
    [attempt] = JobAttempt.objects.all()
    assert (attempt.task_id, attempt.attempt, attempt.succeeded, attempt.error_type) == (
        task_id,
        1,
        False,
        "RuntimeError",
    )
    assert attempt.traceback.endswith("RuntimeError: boom now\n")
    failure = Failure.objects.get(id=task_id)
    assert failure.result == f"boom now : {attempt.traceback}"
    assert failure.attempt_count == 1
    assert [(seen["id"], seen["success"], seen["in_transaction"]) for seen in announced] == [
        (task_id, False, False)
    ]
    assert worker.finish() == 0
    assert finishes == []


def test_a_final_failure_makes_the_task_dead_at_once(worker) -> None:
    task_id = enqueue(failures.gives_up)

    assert worker.claim() == 1
    assert worker.run_next().final == "do not retry"

    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt) == (Job.State.DEAD, 1)
    assert list(JobAttempt.objects.values_list("attempt", "error_type")) == [
        (1, "jobs.engine.errors.DoNotRetry")
    ]


def test_a_task_past_its_timeout_fails_and_the_supervisor_sees_its_deadline(
    make_worker: Callable[..., Worker],
) -> None:
    slots: list[tuple[int, int, float]] = []
    worker = make_worker(
        slot=lambda row_id, attempt, deadline: slots.append((row_id, attempt, deadline))
    )
    task_id = enqueue(sleeps_past_its_timeout, timeout=0.2)
    row_id = Job.objects.get(task_id=task_id).id
    assert worker.claim() == 1
    before = time.time()

    outcome = worker.run_next()

    assert outcome.error_type == "jobs.engine.execute.TaskTimeout"
    assert outcome.message == "the task ran past its timeout of 0.2 s"
    [(running, attempt, deadline), idle] = slots
    assert (running, attempt) == (row_id, 1)
    assert before < deadline <= time.time()
    assert idle == (0, 0, 0.0)
    assert Job.objects.get(task_id=task_id).last_error_type == "jobs.engine.execute.TaskTimeout"


def test_an_error_importing_the_tasks_module_is_a_failed_attempt_with_that_error(
    worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"broken_{uuid.uuid4().hex}"
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{module}.py").write_text(
        "raise LookupError('TABLO_API_KEY is not set')\n\ndef func():\n    pass\n"
    )
    importlib.invalidate_caches()
    task_id = enqueue(f"{module}.func")
    assert worker.claim() == 1

    outcome = worker.run_next()

    assert (outcome.error_type, outcome.message) == ("LookupError", "TABLO_API_KEY is not set")
    assert module not in sys.modules
    # Not "function not found": a deploy that fixes the module makes the retry succeed.
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt, job.last_error_type) == (
        Job.State.RETRYING,
        1,
        "LookupError",
    )
    assert Failure.objects.get(id=task_id).result.startswith("TABLO_API_KEY is not set : ")


def test_a_payload_that_cannot_be_read_makes_the_task_dead_without_running_it(worker) -> None:
    task_id = enqueue(noop)
    Job.objects.filter(task_id=task_id).update(payload="not a signed package")
    assert worker.claim() == 1

    assert worker.run_next() is None

    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt, job.last_error_type) == (
        Job.State.DEAD,
        1,
        "UnreadablePayload",
    )
    assert JobAttempt.objects.get().error_type == "UnreadablePayload"


def test_a_failure_whose_write_hits_a_database_error_is_written_when_it_is_back(
    worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = enqueue(failures.always_fails, "blip")
    assert worker.claim() == 1
    original = failing.record
    calls = []

    def down_once(*args, **kwargs):
        calls.append(kwargs["row_id"])
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(failing, "record", down_once)

    assert worker.run_next().message == "boom blip"

    assert len(calls) == 2
    assert calls[0] == calls[1]
    assert Job.objects.get(task_id=task_id).state == Job.State.RETRYING
    assert JobAttempt.objects.get().error_message == "boom blip"


# -- finish --------------------------------------------------------------------------
def test_a_result_the_database_refuses_does_not_hold_back_the_batch(
    worker, announced, refuses_long_results
) -> None:
    before = enqueue(returns, "short")
    refused = enqueue(returns, "x" * (RESULT_LIMIT * 2))  # well under JOBS_RESULT_MAX_BYTES
    after = enqueue(returns, "also short")
    while worker.claim():
        assert all(outcome.success for outcome in run_claimed(worker))

    assert worker.finish() == 3

    assert not Job.objects.exists()  # every row finished, the refused one too
    assert dict(Success.objects.values_list("id", "result")) == {
        before: "short",
        refused: "the result could not be saved: IntegrityError",
        after: "also short",
    }
    assert {seen["id"]: seen["result"] for seen in announced} == {
        before: "short",
        refused: "the result could not be saved: IntegrityError",
        after: "also short",
    }


def test_a_task_whose_name_has_a_nul_byte_is_enqueued_and_runs(worker) -> None:
    task_id = enqueue(returns, 7, task_name="bad\x00name")
    assert Job.objects.get(task_id=task_id).name == "bad\\x00name"

    assert worker.claim() == 1
    assert worker.run_next().success is True
    assert worker.finish() == 1

    result = Success.objects.get(id=task_id)
    assert (result.name, result.result) == ("bad\\x00name", 7)


def test_a_finish_that_hits_a_database_error_is_tried_again_until_it_lands(
    worker, announced, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [enqueue(returns, n) for n in range(2)]
    while worker.claim():
        run_claimed(worker)
    original = transitions.finish
    calls = []

    def down_once(alias, acks, tasks, **kwargs):
        calls.append(list(acks))
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return original(alias, acks, tasks, **kwargs)

    monkeypatch.setattr(transitions, "finish", down_once)

    assert worker.finish() == 2

    assert len(calls) == 2
    assert calls[0] == calls[1]  # the same batch, again
    assert len(calls[0]) == 2
    assert not Job.objects.exists()
    assert sorted(Success.objects.values_list("result", flat=True)) == [0, 1]
    assert sorted(seen["id"] for seen in announced) == sorted(ids)  # once each


# -- transactional jobs --------------------------------------------------------------
TRANSACTIONAL_MODULE = """
from jobs.engine import context
from jobs.engine.registry import job
from jobs.models import Job

SEEN = []


@job({name!r}, transactional=True)
def sees_its_row():
    row = (
        Job.objects.filter(id=context.current_run().row_id)
        .values("attempt", "started_at", "owner", "state")
        .first()
    )
    SEEN.append(row)
    return row["attempt"]
"""


def test_a_transactional_job_not_imported_yet_is_started_before_its_body_runs(
    worker, announced, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"tx_job_{uuid.uuid4().hex}"
    job_name = f"tests.{module}"
    monkeypatch.syspath_prepend(str(tmp_path))
    # Enqueued by path while its module is not there yet (the enqueue cannot import
    # it): this process meets the module only when the worker runs the task, as a
    # fresh worker process does.
    task_id = enqueue(f"{module}.sees_its_row")
    (tmp_path / f"{module}.py").write_text(TRANSACTIONAL_MODULE.format(name=job_name))
    importlib.invalidate_caches()
    assert module not in sys.modules
    try:
        assert worker.claim() == 1

        outcome = worker.run_next()

        assert outcome.success is True, outcome.message
        assert registry.get(job_name).transactional is True
        [seen] = sys.modules[module].SEEN
    finally:
        sys.modules.pop(module, None)
        registry.unregister(job_name)
    # Inside its own transaction the task saw its row started as this attempt.
    assert (seen["attempt"], seen["owner"], seen["state"]) == (1, worker.node, Job.State.RUNNING)
    assert seen["started_at"] is not None
    assert seen["started_at"] <= timezone.now()
    # Completed in that transaction: the row is gone, the result written, nothing to finish.
    assert not Job.objects.exists()
    assert Success.objects.get(id=task_id).result == 1
    assert worker.finish() == 0
    assert not JobAttempt.objects.exists()
    assert [(seen["id"], seen["success"], seen["in_transaction"]) for seen in announced] == [
        (task_id, True, False)
    ]


# -- give_back, stop, serve, close ---------------------------------------------------
def test_give_back_returns_the_claimed_tasks_not_started_with_no_attempt_used(worker) -> None:
    started, *unstarted = [enqueue(noop, n) for n in range(3)]
    for _ in range(3):
        assert worker.claim() == 1
    worker.run_next()

    assert worker.give_back() == 2
    assert worker.give_back() == 0  # nothing held any more
    assert worker.finish() == 1

    for task_id in unstarted:
        assert row(task_id) == ready()
    assert not Job.objects.filter(task_id=started).exists()
    assert not JobAttempt.objects.exists()
    # Claimed again, they run as their first attempt.
    while worker.claim():
        assert all(outcome.success for outcome in run_claimed(worker))
    assert worker.finish() == 2
    assert set(Success.objects.values_list("attempt_count", flat=True)) == {1}


def test_stop_ends_serve_after_the_task_in_hand_and_gives_back_the_rest(
    make_worker: Callable[..., Worker], announced
) -> None:
    worker = make_worker(bulk=10, poll=0.05)
    ids = {name: enqueue(returns, name) for name in ("first", "second", "third")}

    def stop_during_second(sender, func, task, **kwargs) -> None:
        if task["args"] == ("second",):
            worker.stop()  # what SIGTERM does

    pre_execute.connect(stop_during_second, dispatch_uid="test-worker-stop")
    try:
        worker.serve()
    finally:
        pre_execute.disconnect(dispatch_uid="test-worker-stop")

    assert dict(Success.objects.values_list("result", "id")) == {
        "first": ids["first"],
        "second": ids["second"],
    }
    # Given back if it was claimed, never claimed otherwise: ready as it was.
    assert row(ids["third"]) == ready()
    assert not JobAttempt.objects.exists()
    assert sorted(seen["result"] for seen in announced) == ["first", "second"]
    assert worker.claim() == 0  # stopped for good


def test_close_finishes_the_batch_and_gives_back_the_rest(worker) -> None:
    done, held = enqueue(returns, "done"), enqueue(returns, "held")
    assert worker.claim() == 1
    assert worker.claim() == 1
    assert worker.run_next().success is True

    worker.close()

    assert Success.objects.get(id=done).result == "done"
    assert not Job.objects.filter(task_id=done).exists()
    assert row(held) == ready()
    assert not JobAttempt.objects.exists()


# -- wait ----------------------------------------------------------------------------
def test_wait_wakes_on_a_new_task_on_postgresql_and_polls_on_sqlite(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker(poll=0.05)
    assert worker.wait() is False  # nothing queued (PostgreSQL: its LISTEN is open now)
    enqueue(noop)
    worker.poll = 30.0
    began = time.monotonic()

    woke = worker.wait()

    assert woke is (connection.vendor == POSTGRESQL)
    assert time.monotonic() - began < 10  # a NOTIFY, or SQLite's short poll: not the 30 s
    assert worker.claim() == 1


def test_a_stopping_worker_does_not_wait(make_worker: Callable[..., Worker]) -> None:
    worker = make_worker(poll=30.0)
    worker.stop()
    began = time.monotonic()

    assert worker.wait() is False

    assert time.monotonic() - began < 10


def _finished_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, Any]]:
    """(level, success) of each "task finished" line the worker logged."""
    return [
        (record.levelno, record.msg["success"])
        for record in caplog.records
        if record.name == "jobs.engine.worker"
        and isinstance(record.msg, dict)
        and record.msg.get("event") == "task finished"
    ]


@pytest.mark.parametrize("log_successes", [False, True])
def test_a_success_is_logged_only_when_asked_and_a_failure_always(
    make_worker: Callable[..., Worker],
    settings,
    caplog: pytest.LogCaptureFixture,
    log_successes: bool,
) -> None:
    settings.JOBS_LOG_SUCCESSES = log_successes
    worker = make_worker()
    enqueue(returns, 1)
    enqueue(failures.unregistered_failure)
    caplog.set_level(logging.INFO, logger="jobs.engine.worker")
    while worker.claim():
        run_claimed(worker)

    expected = [(logging.INFO, True)] if log_successes else []
    assert _finished_lines(caplog) == [*expected, (logging.WARNING, False)]
