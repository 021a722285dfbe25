"""The delivery contract, in process, on both project brokers (database and Redis).

The same assertions for each: a claim moves tasks to the claiming node, a dead
node's tasks come back with a lost attempt, a hand-back undoes the attempt,
unique keys hold, priorities order claims, a paused queue hands out nothing,
and a failing task retries by its backoff, ends dead, is listed and retried by
the operators' services. Real-cluster runs of the same contract are in
``tests/reliability/test_delivery.py`` and ``tests/jobs/test_failures_worker.py``.
"""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.signing import SignedPackage

from jobs import pauses
from jobs.engine import nodes, registry, results
from jobs.failures import hook
from jobs.models import Job, JobAttempt, WorkerNode
from tests.support import runtime  # noqa: F401 (registers the tests.* jobs)
from tests.support.failures import finished

pytestmark = pytest.mark.django_db(transaction=True)


def claim_all(broker, *, deadline: float = 5.0) -> list[tuple[tuple[int, int], dict]]:
    """Everything ready now (waits up to ``deadline`` for the first task)."""
    end = time.monotonic() + deadline
    while True:
        got = broker.claim(bulk=100)
        if got or time.monotonic() > end:
            return [(ack, SignedPackage.loads(payload)) for ack, payload in got]
        time.sleep(0.02)


def run_failed(ack, task, exc) -> None:
    """What the worker and monitor do with a failed run (the runtime stamps ``claim``)."""
    done = finished(task, exc=exc, attempt=ack[1])
    done["claim"] = ack
    hook.on_post_execute(task=done)


def test_a_claim_belongs_to_the_node_and_an_ack_ends_the_task(queue_broker) -> None:
    ids = registry.enqueue_many("tests.echo", [("a",), ("b",)], on_commit=False)
    broker = get_broker()
    claimed = claim_all(broker)
    assert sorted(task["id"] for _, task in claimed) == sorted(ids)
    node = nodes.current_node_id()
    assert queue_broker.held(node) == {ack[0]: 1 for ack, _ in claimed}
    assert queue_broker.waiting() == 0
    for ack, _ in claimed:
        broker.acknowledge(ack)

    results.flush_all()
    assert queue_broker.held(node) == {}
    assert broker.claim(bulk=10) == []


def test_priorities_order_the_claims(queue_broker) -> None:
    low = registry.enqueue("tests.echo", "low", on_commit=False)
    high = registry.enqueue("tests.unique", "high", on_commit=False)  # priority 5
    order = [task["id"] for _, task in claim_all(get_broker())]
    assert order == [high, low]


def test_a_unique_key_has_one_active_task(queue_broker) -> None:
    first = registry.enqueue("tests.unique", "k", on_commit=False)
    again = registry.enqueue_many("tests.unique", [("k",), ("other",)], on_commit=False)
    assert again[0] == first
    broker = get_broker()
    claimed = claim_all(broker)
    assert len(claimed) == 2
    # Still held while it runs; free again once it succeeded.
    assert registry.enqueue("tests.unique", "k", on_commit=False) == first
    [(ack, _)] = [(ack, task) for ack, task in claimed if task["id"] == first]
    broker.acknowledge(ack)

    results.flush_all()
    assert registry.enqueue("tests.unique", "k", on_commit=False) != first


def test_a_dead_nodes_tasks_come_back_with_a_lost_attempt(queue_broker) -> None:
    ids = registry.enqueue_many("tests.echo", [("a",), ("b",), ("c",)], on_commit=False)
    broker = get_broker()
    claim_all(broker)
    node = nodes.current_node_id()
    held = queue_broker.held(node)
    assert len(held) == 3

    assert nodes.declare_dead(node, why="test") == 3
    assert WorkerNode.objects.get(id=node).tasks_rescued == 3
    lost = JobAttempt.objects.filter(error_type="WorkerLost").values_list("task_id", "attempt")
    assert sorted(lost) == sorted((task_id, 1) for task_id in ids)
    assert queue_broker.held(node) == {}
    # The next claim (a new node: this process's node is dead) runs them as attempt 2.
    again = claim_all(broker)
    assert sorted(task["id"] for _, task in again) == sorted(ids)
    assert {ack[1] for ack, _ in again} == {2}
    assert nodes.current_node_id() != node
    assert queue_broker.started_again(held)


def test_a_hand_back_undoes_the_attempt(queue_broker) -> None:
    ids = registry.enqueue_many("tests.echo", [("a",), ("b",)], on_commit=False)
    broker = get_broker()
    acks = [ack for ack, _ in claim_all(broker)]
    assert nodes.hand_back(nodes.current_node_id(), acks) == 2
    assert not JobAttempt.objects.exists()
    again = claim_all(broker)
    assert sorted(task["id"] for _, task in again) == sorted(ids)
    assert {ack[1] for ack, _ in again} == {1}


def test_a_paused_queue_hands_out_nothing_until_resumed(queue_broker) -> None:
    broker = get_broker()
    task_id = registry.enqueue("tests.echo", "p", on_commit=False)
    pauses.pause_queue(queue=broker.queue)
    assert broker.dequeue() is None
    assert queue_broker.waiting() == 1
    pauses.resume_queue(queue=broker.queue)
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:
        got = broker.dequeue()
    assert got is not None
    assert [SignedPackage.loads(payload)["id"] for _, payload in got] == [task_id]


def failed_list() -> list[dict]:
    out = StringIO()
    call_command("list_failed_jobs", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_a_failing_task_retries_by_backoff_ends_dead_and_is_retried_by_an_operator(
    queue_broker, settings, admin_client: Client
) -> None:
    settings.JOBS_BACKOFF_SCALE = 0.01  # attempt**4 * 0.01 s
    task_id = registry.enqueue("tests.always_fails", "c", on_commit=False)  # max_attempts 3
    broker = get_broker()
    due = None
    for attempt in (1, 2, 3):
        [(ack, task)] = claim_all(broker)
        assert ack[1] == attempt
        if due is not None:
            assert timezone.now() >= due  # never claimed before its backoff ended
        run_failed(ack, task, RuntimeError("boom c"))
        job = Job.objects.get(task_id=task_id)
        assert job.attempt == attempt
        if attempt < 3:
            assert job.state == Job.State.RETRYING
            due = job.run_at  # retry_at: attempt**4 * 0.01 s after the failure
    assert job.state == Job.State.DEAD
    assert queue_broker.waiting() == 0
    history = JobAttempt.objects.filter(task_id=task_id).order_by("attempt")
    assert [(a.attempt, a.error_message) for a in history] == [(n, "boom c") for n in (1, 2, 3)]
    [listed] = failed_list()
    assert (listed["task_id"], listed["state"], listed["attempt"]) == (task_id, "dead", 3)

    response = admin_client.post(reverse("admin:jobs_failedjob_retry", args=[job.id]))
    assert response.status_code == 302
    assert Job.objects.get(task_id=task_id).state == Job.State.QUEUED
    [(ack, task)] = claim_all(broker)
    assert (task["id"], ack[1]) == (task_id, 4)
    broker.acknowledge(ack)

    results.flush_all()
    hook.on_post_execute(task={**finished(task, exc=None, attempt=4), "claim": ack})
    assert JobAttempt.objects.filter(task_id=task_id, attempt=4, succeeded=True).exists()
    assert not Job.objects.filter(task_id=task_id).exists()


def test_a_report_from_a_node_that_lost_the_task_changes_nothing(queue_broker) -> None:
    task_id = registry.enqueue("tests.always_fails", "x", on_commit=False)
    broker = get_broker()
    [(ack, task)] = claim_all(broker)
    nodes.declare_dead(nodes.current_node_id(), why="test")
    nodes.forget()
    [(again, _)] = claim_all(broker)
    assert again[1] == 2
    run_failed(ack, task, RuntimeError("late"))  # the old node's report of attempt 1
    assert not JobAttempt.objects.filter(task_id=task_id, error_type="RuntimeError").exists()


def test_a_node_declared_dead_claims_nothing_until_it_rejoins(queue_broker) -> None:
    node = nodes.register(cluster=get_broker().queue)  # managed: it beats, and rejoins
    task_id = registry.enqueue("tests.echo", "r", on_commit=False)
    broker = get_broker()
    assert nodes.declare_dead(node, why="test") == 0
    assert broker.claim(bulk=10) == []
    assert nodes.beat(node) is False  # finds itself dead: rejoins
    [(ack, payload)] = broker.claim(bulk=10)
    assert SignedPackage.loads(payload)["id"] == task_id
    assert queue_broker.held(node) == {ack[0]: 1}


def test_a_failed_unique_task_keeps_its_key_until_it_is_dead(queue_broker) -> None:
    task_id = registry.enqueue("tests.unique", "u", on_commit=False)
    broker = get_broker()
    [(ack, task)] = claim_all(broker)
    run_failed(ack, task, RuntimeError("retry me"))
    assert Job.objects.get(task_id=task_id).state == Job.State.RETRYING
    assert registry.enqueue("tests.unique", "u", on_commit=False) == task_id


def test_healthz_shows_the_queue_the_running_tasks_and_what_each_node_holds(
    queue_broker, client
) -> None:
    registry.enqueue_many("tests.echo", [("a",), ("b",), ("c",)], on_commit=False)
    broker = get_broker()
    body = client.get("/healthz").json()
    assert (body["queue"]["queued"], body["running"]) == (3, [])

    [(_payload, task)] = [(p, SignedPackage.loads(p)) for _, p in broker.claim(bulk=1)]
    body = client.get("/healthz").json()
    assert body["queue"]["queued"] == 2
    [running] = body["running"]
    assert (running["task_id"], running["job"], running["attempt"]) == (task["id"], "tests.echo", 1)
    [node] = [n for n in body["nodes"] if n["id"] == nodes.current_node_id()]
    assert node["tasks_running"] == 1


def test_wait_says_whether_a_new_task_woke_it(queue_broker) -> None:
    broker = get_broker()
    assert broker.wait(0.05) is False  # nothing queued (and PostgreSQL's LISTEN is open now)
    registry.enqueue("tests.echo", "wake", on_commit=False)
    # SQLite has no wake-up: its wait is a short poll that never reports one.
    assert broker.wait(5.0) is (queue_broker.kind == "redis" or broker.is_postgresql)
