"""jobs.engine.store: a worker claims ready tasks, starts them one by one, gives back the rest.

An attempt counts when a claimed task starts (``transitions.start``), never at the claim:
a task claimed and given back (a stopping worker, a dead worker process, a stopped
or dead node) comes back as it was, and only a started one gets a ``WorkerLost``
attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.tasks import async_task

from jobs.engine import failing, nodes, transitions
from jobs.engine.broker import DatabaseBroker
from jobs.models import Job, JobAttempt, WorkerNode
from tests.support import broker as tasks

QUEUE = "store-test"

pytestmark = pytest.mark.django_db


def enqueue(n: int = 1, **fields: object) -> list[Job]:
    broker = DatabaseBroker(list_key=QUEUE)
    ids = [async_task(tasks.noop, i, broker=broker) for i in range(n)]
    if fields:
        Job.objects.filter(task_id__in=ids).update(**fields)
    return list(Job.objects.filter(task_id__in=ids).order_by("id"))


def live_node(name: str = "here") -> int:
    now = timezone.now()
    return WorkerNode.objects.create(
        cluster=QUEUE, host=name, pid=4242, process_key="", started_at=now, last_beat_at=now
    ).id


def claim(node: int, *, by: str = "w1", limit: int = 10) -> list[int]:
    return [
        c.row_id
        for c in transitions.claim(alias="default", queue=QUEUE, node=node, by=by, limit=limit)
    ]


def start(node: int, row_id: int) -> int | None:
    return transitions.start(alias="default", row_id=row_id, node=node)


def row(job: Job) -> dict[str, object]:
    """The fields a claim, a start and a give-back change."""
    return (
        Job.objects.filter(id=job.id)
        .values("state", "attempt", "owner", "claimed_by", "started_at")
        .get()
    )


def ready(*, attempt: int, state: str = Job.State.QUEUED) -> dict[str, object]:
    return {"state": state, "attempt": attempt, "owner": None, "claimed_by": "", "started_at": None}


def test_claim_takes_the_highest_priority_then_the_earliest_run_at_then_the_lowest_id() -> None:
    oldest, older, first_tie, urgent, second_tie = enqueue(5)
    now = timezone.now()
    Job.objects.filter(id=oldest.id).update(run_at=now - timedelta(minutes=3))
    Job.objects.filter(id=older.id).update(run_at=now - timedelta(minutes=2))
    Job.objects.filter(id__in=[first_tie.id, second_tie.id]).update(
        run_at=now - timedelta(minutes=1)
    )
    Job.objects.filter(id=urgent.id).update(priority=9, run_at=now - timedelta(seconds=1))
    me = live_node()

    assert claim(me, limit=2) == [urgent.id, oldest.id]
    assert claim(me, limit=10) == [older.id, first_tie.id, second_tie.id]
    assert claim(me, limit=10) == []


def test_claim_stamps_the_owner_and_the_claimer_and_leaves_the_attempt_uncounted() -> None:
    [queued] = enqueue(timeout=30, max_attempts=5)
    [retrying] = enqueue(
        state=Job.State.RETRYING, attempt=2, max_attempts=3, last_failed_at=timezone.now()
    )
    me = live_node()
    before = timezone.now()

    claimed = transitions.claim(alias="default", queue=QUEUE, node=me, by="tablo@host:7", limit=10)

    assert claimed == [
        transitions.Claimed(
            row_id=queued.id, payload=queued.payload, timeout=30, max_attempts=5, attempt=0
        ),
        transitions.Claimed(
            row_id=retrying.id, payload=retrying.payload, timeout=None, max_attempts=3, attempt=2
        ),
    ]
    for job, attempt in ((queued, 0), (retrying, 2)):
        assert row(job) == {
            "state": Job.State.RUNNING,
            "attempt": attempt,
            "owner": me,
            "claimed_by": "tablo@host:7",
            "started_at": None,
        }
        fresh = Job.objects.get(id=job.id)
        assert fresh.claimed_at >= before
        assert fresh.run_at == job.run_at  # kept: a task given back keeps its place


def test_future_retries_are_not_claimed_until_due() -> None:
    [job] = enqueue(state=Job.State.RETRYING, attempt=1, run_at=timezone.now() + timedelta(hours=1))
    me = live_node()
    assert claim(me) == []

    Job.objects.filter(id=job.id).update(run_at=timezone.now() - timedelta(seconds=1))
    assert claim(me) == [job.id]


def test_start_counts_the_attempt_and_stamps_when_it_started() -> None:
    queued, retrying = enqueue(2)
    Job.objects.filter(id=retrying.id).update(attempt=2)
    me = live_node()
    claim(me)
    before = timezone.now()

    assert start(me, queued.id) == 1
    assert start(me, retrying.id) == 3

    for job, attempt in ((queued, 1), (retrying, 3)):
        fresh = Job.objects.get(id=job.id)
        assert (fresh.state, fresh.attempt, fresh.owner) == (Job.State.RUNNING, attempt, me)
        assert fresh.started_at >= before


def test_a_task_is_started_once() -> None:
    [job] = enqueue()
    me = live_node()
    claim(me)

    assert start(me, job.id) == 1
    assert start(me, job.id) is None
    assert Job.objects.get(id=job.id).attempt == 1


def test_a_node_cannot_start_a_task_it_does_not_hold() -> None:
    [job] = enqueue()
    me, other = live_node("here"), live_node("elsewhere")

    assert start(me, job.id) is None  # not claimed at all
    claim(other)
    assert start(me, job.id) is None  # another node's claim
    assert row(job)["attempt"] == 0


def test_a_node_declared_dead_cannot_start_what_it_had_claimed() -> None:
    [job] = enqueue()
    me = live_node()
    claim(me)

    assert nodes.declare_dead(me, why="test") == 1

    assert start(me, job.id) is None
    assert row(job) == ready(attempt=0)
    assert not JobAttempt.objects.exists()


@pytest.mark.parametrize(
    "end", [lambda node: nodes.declare_dead(node, why="test"), nodes.stop], ids=["dead", "stopped"]
)
def test_a_node_that_is_dead_or_stopped_claims_nothing(end: Callable[[int], object]) -> None:
    [job] = enqueue()
    me = live_node()
    end(me)

    assert claim(me) == []
    assert row(job) == ready(attempt=0)


def test_give_back_returns_only_this_nodes_unstarted_tasks_as_they_were() -> None:
    unstarted, started, failed_before, peers = enqueue(4)
    Job.objects.filter(id=failed_before.id).update(
        state=Job.State.RETRYING, attempt=1, last_failed_at=timezone.now()
    )
    me, peer = live_node("here"), live_node("elsewhere")
    assert claim(me, limit=3) == [unstarted.id, started.id, failed_before.id]
    assert claim(peer) == [peers.id]
    start(me, started.id)
    everything = [unstarted.id, started.id, failed_before.id, peers.id]

    assert transitions.give_back(alias="default", node=me, row_ids=everything) == 2
    assert transitions.give_back(alias="default", node=me, row_ids=everything) == 0  # not ours now

    assert row(unstarted) == ready(attempt=0)
    assert row(failed_before) == ready(attempt=1, state=Job.State.RETRYING)
    assert (row(started)["owner"], row(started)["attempt"]) == (me, 1)
    assert (row(peers)["owner"], row(peers)["attempt"]) == (peer, 0)
    assert not JobAttempt.objects.exists()
    assert claim(me) == [unstarted.id, failed_before.id]


def test_give_back_of_nothing_writes_nothing() -> None:
    assert transitions.give_back(alias="default", node=live_node(), row_ids=[]) == 0


def test_a_lost_worker_process_gives_back_its_unstarted_tasks_and_returns_the_started() -> None:
    started, unstarted, other_workers = enqueue(3)
    me = live_node()
    assert claim(me, by="w1", limit=2) == [started.id, unstarted.id]
    assert claim(me, by="w2") == [other_workers.id]
    start(me, started.id)

    lost = transitions.worker_lost(alias="default", node=me, by="w1")

    assert [job.id for job in lost] == [started.id]
    assert row(unstarted) == ready(attempt=0)
    assert row(other_workers)["claimed_by"] == "w2"
    assert not JobAttempt.objects.exists()  # the started one's attempt is failing.lost's


def test_the_started_task_of_a_lost_worker_fails_its_attempt_with_the_reason(settings) -> None:
    settings.JOBS_BACKOFF_SCALE = 100  # the retry an hour away
    [started] = enqueue(1)
    me = live_node()
    claim(me, by="w1")
    start(me, started.id)
    [job] = transitions.worker_lost(alias="default", node=me, by="w1")

    assert failing.lost(job, reason="its worker process was killed by SIGKILL", owner=me)

    after = Job.objects.get(id=started.id)
    assert (after.state, after.attempt, after.owner) == (Job.State.RETRYING, 1, None)
    assert after.run_at > timezone.now()
    [attempt] = JobAttempt.objects.all()
    assert (attempt.attempt, attempt.error_type, attempt.error_message) == (
        1,
        "WorkerLost",
        "its worker process was killed by SIGKILL; the attempt did not finish",
    )


@pytest.mark.parametrize(
    "end",
    [lambda node: nodes.declare_dead(node, why="killed -9"), nodes.stop],
    ids=["declared dead", "stopped"],
)
def test_a_claimed_task_that_never_started_is_not_dead_at_its_only_attempt(
    end: Callable[[int], int | None],
) -> None:
    # The kill -9 fault: a max_attempts=1 task claimed but never started used no attempt.
    started, unstarted = enqueue(2, max_attempts=1)
    me = live_node()
    claim(me)
    start(me, started.id)

    assert end(me) == 2

    assert row(unstarted) == ready(attempt=0)
    dead = Job.objects.get(id=started.id)
    assert (dead.state, dead.attempt, dead.owner, dead.last_error_type) == (
        Job.State.DEAD,
        1,
        None,
        "WorkerLost",
    )
    assert dead.last_error_message.endswith("; attempt 1 was the last allowed")
    assert list(JobAttempt.objects.values_list("task_id", "attempt", "error_type")) == [
        (started.task_id, 1, "WorkerLost")
    ]
    # The unstarted task runs its one attempt on a live node.
    peer = live_node("elsewhere")
    assert claim(peer) == [unstarted.id]
    assert start(peer, unstarted.id) == 1


def _claim_all(node: int, by: str, taken: list, errors: list, barrier: threading.Barrier) -> None:
    try:
        barrier.wait()
        while True:
            claimed = claim(node, by=by, limit=7)
            if not claimed:
                # Another claimer may hold rows it skipped: make sure the queue is empty.
                if not Job.objects.filter(queue=QUEUE, state=Job.State.QUEUED).exists():
                    break
                continue
            taken.extend(claimed)
    except Exception as exc:  # surfaced by the test
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_take_the_same_row() -> None:
    ids = {job.id for job in enqueue(150)}
    me = live_node()
    taken: list[int] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(4)
    threads = [
        threading.Thread(target=_claim_all, args=(me, f"w{n}", taken, errors, barrier))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(taken) == len(set(taken))  # no row handed out twice
    assert set(taken) == ids
    assert Job.objects.exclude(state=Job.State.RUNNING).count() == 0
