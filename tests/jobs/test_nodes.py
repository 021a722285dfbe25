"""jobs.engine.nodes: a claimed task belongs to a live node; a dead node's tasks go out again
(a started one with a lost attempt, one it had not started as it was)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.tasks import async_task

from jobs.engine import nodes
from jobs.engine.broker import DatabaseBroker
from jobs.engine.transitions import WorkerInfo, fail
from jobs.models import Job, JobAttempt, WorkerNode
from tests.support import broker as tasks
from tests.support import jobtable

QUEUE = "nodes-test"

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker() -> DatabaseBroker:
    return DatabaseBroker(list_key=QUEUE)


def enqueue(broker: DatabaseBroker, n: int = 1) -> list[Job]:
    ids = [async_task(tasks.noop, i, broker=broker) for i in range(n)]
    return list(Job.objects.filter(task_id__in=ids).order_by("id"))


def peer(**fields: object) -> WorkerNode:
    """A node of another machine (only its beats tell whether it lives)."""
    now = timezone.now()
    values = {
        "cluster": "tablo",
        "host": "elsewhere",
        "pid": 4242,
        "process_key": "other-boot/1/1",
        "started_at": now,
        "last_beat_at": now,
    }
    values.update(fields)
    return WorkerNode.objects.create(**values)


def held_by(node: WorkerNode, jobs: list[Job], *, attempt: int = 1, started: bool = True) -> None:
    """The jobs claimed by ``node``, and started as ``attempt`` unless ``started=False``."""
    now = timezone.now()
    Job.objects.filter(id__in=[j.id for j in jobs]).update(
        state=Job.State.RUNNING,
        owner=node.id,
        attempt=attempt if started else attempt - 1,
        claimed_at=now,
        started_at=now if started else None,
    )


def claim(bulk: int = 10) -> list[tuple[tuple[int, int], str]]:
    return jobtable.claim(bulk=bulk, queue=QUEUE)


def test_a_silent_node_is_declared_dead_and_its_tasks_run_again(broker, settings) -> None:
    settings.JOBS_NODE_DEAD_AFTER_SECONDS = 15
    jobs = enqueue(broker, 3)
    silent = peer(last_beat_at=timezone.now() - timedelta(seconds=16))
    held_by(silent, jobs[:2])

    assert nodes.rescue_dead_nodes() == 2

    silent.refresh_from_db()
    assert silent.dead_at is not None
    assert silent.tasks_rescued == 2
    lost = JobAttempt.objects.filter(error_type="WorkerLost").order_by("task_id")
    assert sorted(a.task_id for a in lost) == sorted(j.task_id for j in jobs[:2])
    assert all(a.attempt == 1 and "declared dead" in a.error_message for a in lost)
    # Ready again, attempt + 1 at the next claim, in their original order.
    claimed = [ack for ack, _ in claim()]
    assert claimed == [(jobs[0].id, 2), (jobs[1].id, 2), (jobs[2].id, 1)]
    assert nodes.rescue_dead_nodes() == 0  # declared once


def test_a_dead_nodes_claims_it_had_not_started_come_back_as_they_were(broker) -> None:
    jobs = enqueue(broker, 2)
    Job.objects.filter(id=jobs[1].id).update(last_failed_at=timezone.now())
    dead = peer()
    held_by(dead, jobs[:1], started=False)
    held_by(dead, jobs[1:], attempt=3, started=False)

    assert nodes.declare_dead(dead.id, why="test") == 2

    rows = Job.objects.order_by("id").values_list("state", "attempt", "owner", "claimed_by")
    assert list(rows) == [(Job.State.QUEUED, 0, None, ""), (Job.State.RETRYING, 2, None, "")]
    assert not JobAttempt.objects.exists()
    assert [ack for ack, _ in claim()] == [(jobs[0].id, 1), (jobs[1].id, 3)]


def test_a_beating_peer_keeps_its_tasks(broker, settings) -> None:
    settings.JOBS_NODE_DEAD_AFTER_SECONDS = 15
    jobs = enqueue(broker)
    alive = peer(last_beat_at=timezone.now() - timedelta(seconds=10))
    held_by(alive, jobs)
    Job.objects.filter(id=jobs[0].id).update(claimed_at=timezone.now() - timedelta(days=1))

    assert nodes.rescue_dead_nodes() == 0
    assert claim() == []
    assert Job.objects.get(id=jobs[0].id).owner == alive.id


def test_a_node_whose_process_is_gone_from_this_machine_is_dead_at_once(broker) -> None:
    jobs = enqueue(broker)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    key = nodes.process_key(child.pid)
    child.communicate(b"")  # it exits and is reaped: the pid names no process now
    gone = peer(host=nodes.hostname(), pid=child.pid, process_key=key)
    held_by(gone, jobs)

    assert key
    assert nodes.rescue_dead_nodes() == 1

    gone.refresh_from_db()
    assert gone.dead_at is not None
    assert [ack for ack, _ in claim()] == [(jobs[0].id, 2)]


def test_the_last_attempt_of_a_dead_node_makes_the_task_dead(broker) -> None:
    jobs = enqueue(broker)
    Job.objects.filter(id=jobs[0].id).update(max_attempts=2)
    held_by(peer(), jobs, attempt=2)

    nodes.declare_dead(WorkerNode.objects.get(host="elsewhere").id, why="test")

    job = Job.objects.get(id=jobs[0].id)
    assert job.state == Job.State.DEAD
    assert job.owner is None
    assert job.last_error_type == "WorkerLost"
    assert "attempt 2 was the last allowed" in job.last_error_message
    assert claim() == []


def test_a_node_declared_dead_claims_nothing_until_it_beats_again(broker) -> None:
    enqueue(broker, 2)
    me = nodes.register(cluster="tablo")  # as qcluster does: it beats for itself
    [(first, _)] = claim(bulk=1)

    nodes.declare_dead(me, why="test")
    assert claim() == []  # a claim of a dead node takes nothing
    assert nodes.beat(me) is False  # it learns it was declared dead, and rejoins

    # What it held was handed out at its death: it is claimed again as a new attempt.
    claimed = [ack for ack, _ in claim()]
    assert claimed[0] == (first[0], first[1] + 1)
    assert len(claimed) == 2
    assert set(Job.objects.values_list("owner", flat=True)) == {me}


def test_a_failure_report_from_a_node_that_lost_the_task_is_dropped(broker) -> None:
    [job] = enqueue(broker)
    claim()
    me = nodes.current_node_id()
    nodes.declare_dead(me, why="test")
    history = JobAttempt.objects.count()

    current = fail(
        task_id=job.task_id,
        attempt=1,
        error_type="RuntimeError",
        error_message="late",
        retry_at=timezone.now(),
        worker=WorkerInfo(),
        owner=me,
    )

    assert current is False
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED  # as the rescue left it
    assert job.last_error_type == ""
    assert JobAttempt.objects.count() == history


def test_a_clean_stop_hands_out_what_the_node_still_holds(broker) -> None:
    [job] = enqueue(broker)
    claim()
    me = nodes.current_node_id()

    assert nodes.stop(me) == 1

    node = WorkerNode.objects.get(id=me)
    assert node.stopped_at is not None
    assert node.dead_at is None
    lost = JobAttempt.objects.get()
    assert (lost.task_id, lost.attempt, lost.error_type) == (job.task_id, 1, "WorkerLost")
    assert lost.error_message == (
        "the worker node stopped before this attempt reported; the task was handed out again"
    )
    assert Job.objects.values_list("state", "attempt", "owner").get() == (
        Job.State.QUEUED,
        1,
        None,
    )
