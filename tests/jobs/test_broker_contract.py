"""The delivery contract, in process, on the database queue.

A claim moves tasks to the claiming node and a finish ends them, a dead node's
started tasks come back with a lost attempt, a claimed task given back uses no
attempt, unique keys hold, priorities order claims, a paused queue hands out
nothing, and a failing task retries by its backoff, ends dead, is listed and
retried by the operators' services. Real-cluster runs of the same contract are in
``tests/reliability/test_delivery.py`` and ``tests/jobs/test_failures_worker.py``.
"""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage

from jobs import pauses
from jobs.engine import execute, failing, nodes, registry, transitions
from jobs.engine.worker import Worker
from jobs.models import Job, JobAttempt, WorkerNode
from tests.support import (
    jobtable,
    runtime,  # noqa: F401 (registers the tests.* jobs)
)
from tests.support.failures import finished

pytestmark = pytest.mark.django_db(transaction=True)


def claim_all(*, deadline: float = 5.0) -> list[tuple[tuple[int, int], dict]]:
    """Everything ready now (waits up to ``deadline`` for the first task)."""
    end = time.monotonic() + deadline
    while True:
        got = jobtable.claim(bulk=100)
        if got or time.monotonic() > end:
            return [(ack, SignedPackage.loads(payload)) for ack, payload in got]
        time.sleep(0.02)


def run_failed(ack, task, exc: Exception, *, node: int) -> None:
    """What a worker of ``node`` does when the started task ``ack`` raised ``exc``."""
    task = {**task, "attempt": ack[1]}
    now = timezone.now()
    outcome = execute.Outcome(
        success=False,
        started_at=now,
        stopped=now,
        duration=0.0,
        error=exc,
        error_type=execute.type_name(exc),
        message=execute.message_of(exc),
    )
    max_attempts = Job.objects.get(id=ack[0]).max_attempts
    failing.record(task, outcome, row_id=ack[0], max_attempts=max_attempts, owner=node)


def finish(acks, tasks=None) -> set:
    """What the worker does with the tasks that succeeded: finish them in one batch."""
    return transitions.finish("default", list(acks), tasks or {}, owner=jobtable.node())


def test_a_claim_belongs_to_the_node_and_a_finish_ends_the_task() -> None:
    ids = registry.enqueue_many("tests.echo", [("a",), ("b",)], on_commit=False)
    claimed = claim_all()
    assert sorted(task["id"] for _, task in claimed) == sorted(ids)
    node = nodes.current_node_id()
    assert jobtable.held(node) == {ack[0]: 1 for ack, _ in claimed}
    assert jobtable.waiting() == 0

    assert finish(ack for ack, _ in claimed) == {ack for ack, _ in claimed}
    assert jobtable.held(node) == {}
    assert jobtable.claim(bulk=10) == []


def test_priorities_order_the_claims() -> None:
    low = registry.enqueue("tests.echo", "low", on_commit=False)
    high = registry.enqueue("tests.unique", "high", on_commit=False)  # priority 5
    order = [task["id"] for _, task in claim_all()]
    assert order == [high, low]


def test_a_unique_key_has_one_active_task() -> None:
    first = registry.enqueue("tests.unique", "k", on_commit=False)
    again = registry.enqueue_many("tests.unique", [("k",), ("other",)], on_commit=False)
    assert again[0] == first
    claimed = claim_all()
    assert len(claimed) == 2
    # Still held while it runs; free again once it succeeded.
    assert registry.enqueue("tests.unique", "k", on_commit=False) == first
    [(ack, _)] = [(ack, task) for ack, task in claimed if task["id"] == first]
    assert finish([ack]) == {ack}
    assert registry.enqueue("tests.unique", "k", on_commit=False) != first


def test_a_dead_nodes_tasks_come_back_with_a_lost_attempt() -> None:
    ids = registry.enqueue_many("tests.echo", [("a",), ("b",), ("c",)], on_commit=False)
    claim_all()
    node = nodes.current_node_id()
    held = jobtable.held(node)
    assert len(held) == 3

    assert nodes.declare_dead(node, why="test") == 3
    assert WorkerNode.objects.get(id=node).tasks_rescued == 3
    lost = JobAttempt.objects.filter(error_type="WorkerLost").values_list("task_id", "attempt")
    assert sorted(lost) == sorted((task_id, 1) for task_id in ids)
    assert jobtable.held(node) == {}
    # The next claim (a new node: this process's node is dead) runs them as attempt 2.
    again = claim_all()
    assert sorted(task["id"] for _, task in again) == sorted(ids)
    assert {ack[1] for ack, _ in again} == {2}
    assert nodes.current_node_id() != node
    assert jobtable.started_again(held)


def test_a_claimed_task_given_back_uses_no_attempt() -> None:
    ids = registry.enqueue_many("tests.echo", [("a",), ("b",)], on_commit=False)
    row_ids = [claimed.row_id for claimed in jobtable.claim_unstarted()]
    assert len(row_ids) == 2
    assert transitions.give_back(alias="default", node=jobtable.node(), row_ids=row_ids) == 2
    assert not JobAttempt.objects.exists()
    again = claim_all()
    assert sorted(task["id"] for _, task in again) == sorted(ids)
    assert {ack[1] for ack, _ in again} == {1}


def test_a_paused_queue_hands_out_nothing_until_resumed() -> None:
    worker = Worker(queue=Conf.CLUSTER_NAME, node=jobtable.node())
    task_id = registry.enqueue("tests.echo", "p", on_commit=False)
    pauses.pause_queue(queue=worker.queue)
    assert worker.claim() == 0
    assert jobtable.waiting() == 1
    pauses.resume_queue(queue=worker.queue)
    # The worker re-reads the pause at most every paused.CHECK_SECONDS.
    deadline = time.monotonic() + 5
    while not worker.claim() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [SignedPackage.loads(c.payload)["id"] for c in worker.claimed] == [task_id]


def failed_list() -> list[dict]:
    out = StringIO()
    call_command("list_failed_jobs", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_a_failing_task_retries_by_backoff_ends_dead_and_is_retried_by_an_operator(
    settings, admin_client: Client
) -> None:
    settings.JOBS_BACKOFF_SCALE = 0.01  # attempt**4 * 0.01 s
    task_id = registry.enqueue("tests.always_fails", "c", on_commit=False)  # max_attempts 3
    due = None
    for attempt in (1, 2, 3):
        [(ack, task)] = claim_all()
        assert ack[1] == attempt
        if due is not None:
            assert timezone.now() >= due  # never claimed before its backoff ended
        run_failed(ack, task, RuntimeError("boom c"), node=jobtable.node())
        job = Job.objects.get(task_id=task_id)
        assert job.attempt == attempt
        if attempt < 3:
            assert job.state == Job.State.RETRYING
            due = job.run_at  # retry_at: attempt**4 * 0.01 s after the failure
    assert job.state == Job.State.DEAD
    assert jobtable.waiting() == 0
    history = JobAttempt.objects.filter(task_id=task_id).order_by("attempt")
    assert [(a.attempt, a.error_message) for a in history] == [(n, "boom c") for n in (1, 2, 3)]
    [listed] = failed_list()
    assert (listed["task_id"], listed["state"], listed["attempt"]) == (task_id, "dead", 3)

    response = admin_client.post(reverse("admin:jobs_failedjob_retry", args=[job.id]))
    assert response.status_code == 302
    assert Job.objects.get(task_id=task_id).state == Job.State.QUEUED
    [(ack, task)] = claim_all()
    assert (task["id"], ack[1]) == (task_id, 4)

    assert finish([ack], {ack: finished(task, exc=None, attempt=4)}) == {ack}
    assert JobAttempt.objects.filter(task_id=task_id, attempt=4, succeeded=True).exists()
    assert not Job.objects.filter(task_id=task_id).exists()


def test_a_report_from_a_node_that_lost_the_task_changes_nothing() -> None:
    task_id = registry.enqueue("tests.always_fails", "x", on_commit=False)
    [(ack, task)] = claim_all()
    old = nodes.current_node_id()
    nodes.declare_dead(old, why="test")
    nodes.forget()
    [(again, _)] = claim_all()
    assert again[1] == 2
    run_failed(ack, task, RuntimeError("late"), node=old)  # the old node's report of attempt 1
    assert not JobAttempt.objects.filter(task_id=task_id, error_type="RuntimeError").exists()
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt, job.owner) == (Job.State.RUNNING, 2, nodes.current_node_id())


def test_a_node_declared_dead_claims_nothing_until_it_rejoins() -> None:
    node = nodes.register(cluster=get_broker().queue)  # managed: it beats, and rejoins
    task_id = registry.enqueue("tests.echo", "r", on_commit=False)
    assert nodes.declare_dead(node, why="test") == 0
    assert jobtable.claim(bulk=10) == []
    assert nodes.beat(node) is False  # finds itself dead: rejoins
    [(ack, payload)] = jobtable.claim(bulk=10)
    assert SignedPackage.loads(payload)["id"] == task_id
    assert jobtable.held(node) == {ack[0]: 1}


def test_a_failed_unique_task_keeps_its_key_until_it_is_dead() -> None:
    task_id = registry.enqueue("tests.unique", "u", on_commit=False)
    [(ack, task)] = claim_all()
    run_failed(ack, task, RuntimeError("retry me"), node=jobtable.node())
    assert Job.objects.get(task_id=task_id).state == Job.State.RETRYING
    assert registry.enqueue("tests.unique", "u", on_commit=False) == task_id


def test_healthz_shows_the_queue_the_running_tasks_and_what_each_node_holds(client) -> None:
    registry.enqueue_many("tests.echo", [("a",), ("b",), ("c",)], on_commit=False)
    body = client.get("/healthz").json()
    assert (body["queue"]["queued"], body["running"]) == (3, [])

    [(_payload, task)] = [(p, SignedPackage.loads(p)) for _, p in jobtable.claim(bulk=1)]
    body = client.get("/healthz").json()
    assert body["queue"]["queued"] == 2
    [running] = body["running"]
    assert (running["task_id"], running["job"], running["attempt"]) == (task["id"], "tests.echo", 1)
    [node] = [n for n in body["nodes"] if n["id"] == nodes.current_node_id()]
    assert node["tasks_running"] == 1


def test_a_worker_wait_says_whether_a_new_task_woke_it() -> None:
    worker = Worker(queue=Conf.CLUSTER_NAME, node=jobtable.node(), poll=0.05)
    try:
        assert worker.wait() is False  # nothing queued (and PostgreSQL's LISTEN is open now)
        registry.enqueue("tests.echo", "wake", on_commit=False)
        worker.poll = 5.0
        # SQLite has no wake-up: its wait is a short poll that never reports one.
        assert worker.wait() is (connection.vendor == "postgresql")
    finally:
        if worker.listener is not None:
            worker.listener.close()
