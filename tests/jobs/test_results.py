"""jobs.engine.results: a worker's batch of succeeded tasks finished in one transaction
(rows deleted, results written, hooks called once), and the results' retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.db.models.signals import post_save
from django.utils import timezone
from django_q.models import Task
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage
from django_q.tasks import async_task, fetch

from jobs.engine import context, failing, nodes, results, transitions
from jobs.engine.broker import DatabaseBroker
from jobs.engine.worker import Worker
from jobs.models import Job
from tests.support import broker as tasks
from tests.support import jobtable

QUEUE = "results-test"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker() -> DatabaseBroker:
    return DatabaseBroker(list_key=QUEUE)


@pytest.fixture
def saved() -> list[Task]:
    seen: list[Task] = []

    def receiver(sender, instance, **kwargs) -> None:
        seen.append(instance)

    post_save.connect(receiver, sender=Task, dispatch_uid="test-results-saved")
    yield seen
    post_save.disconnect(dispatch_uid="test-results-saved", sender=Task)


def finished(broker: DatabaseBroker, n: int = 1) -> list[tuple[tuple[int, int], dict]]:
    """Enqueue and claim ``n`` tasks; each comes back as (ack, finished package)."""
    for i in range(n):
        async_task(tasks.noop, i, broker=broker)
    done = []
    for ack, payload in jobtable.claim(bulk=n, queue=QUEUE):
        package = SignedPackage.loads(payload)
        package.update(success=True, result=package["args"][0], stopped=timezone.now(), attempt=1)
        done.append((ack, package))
    return done


def test_a_batch_deletes_its_rows_and_writes_results_once(broker, saved) -> None:
    done = finished(broker, 3)
    acks = [ack for ack, _ in done]
    me = jobtable.node(QUEUE)

    assert transitions.finish("default", acks, dict(done), owner=me) == set(acks)
    assert transitions.finish("default", acks, dict(done), owner=me) == set()  # nothing twice

    assert not Job.objects.exists()
    assert sorted(Task.objects.values_list("result", flat=True)) == [0, 1, 2]
    assert sorted(t.result for t in saved) == [0, 1, 2]  # post_save (hook=) once each


def test_a_node_that_lost_the_task_writes_no_result(broker, saved) -> None:
    [(ack, package)] = finished(broker)
    me = jobtable.node(QUEUE)
    # Declared dead by a peer, the task handed out again (a new claim holds it).
    nodes.declare_dead(me, why="test")
    Job.objects.filter(id=ack[0]).update(attempt=2, owner=None)

    assert transitions.finish("default", [ack], {ack: package}, owner=me) == set()

    assert Job.objects.filter(id=ack[0]).exists()
    assert not Task.objects.exists()
    assert saved == []


def test_a_batch_finish_of_a_node_that_lost_some_tasks_writes_only_its_own(broker, saved) -> None:
    (kept_ack, kept), (lost_ack, lost) = finished(broker, 2)
    me = jobtable.node(QUEUE)
    # The second task was taken from this node (a peer holds it now as attempt 2).
    Job.objects.filter(id=lost_ack[0]).update(attempt=2, owner=None)

    done = transitions.finish(
        "default", [kept_ack, lost_ack], {kept_ack: kept, lost_ack: lost}, owner=me
    )

    assert done == {kept_ack}
    assert list(Job.objects.values_list("id", flat=True)) == [lost_ack[0]]
    assert list(Task.objects.values_list("id", flat=True)) == [kept["id"]]
    assert [t.id for t in saved] == [kept["id"]]


def test_a_finish_that_hits_a_database_error_is_tried_again_until_it_lands(
    broker, monkeypatch
) -> None:
    async_task(tasks.noop, 0, broker=broker)
    worker = Worker(queue=QUEUE, node=jobtable.node(QUEUE))
    assert worker.claim() == 1
    assert worker.run_next().success is True
    original = transitions.finish
    calls = []

    def down_once(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 1:
            raise OperationalError("database went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(transitions, "finish", down_once)

    assert worker.finish() == 1

    assert len(calls) == 2
    assert calls[0] == calls[1]  # the same batch, again
    assert not Job.objects.exists()
    assert Task.objects.get().result is None  # noop's result


def _result(task_id: str, *, age: timedelta, success: bool = True) -> Task:
    stopped = timezone.now() - age
    return Task.objects.create(
        id=task_id.ljust(32, "0"),
        name=task_id,
        func="tests.support.broker.noop",
        started=stopped,
        stopped=stopped,
        success=success,
        result=task_id,
    )


def test_prune_keeps_the_newest_successes_and_drops_old_results() -> None:
    for n in range(5):
        _result(f"ok{n}", age=timedelta(minutes=n))
    _result("old-ok", age=timedelta(hours=30))
    _result("old-failed", age=timedelta(hours=30), success=False)
    _result("failed", age=timedelta(minutes=1), success=False)

    report = results.prune(max_rows=3, max_age_hours=24)

    assert report == results.PruneReport(by_age=2, by_count=2)
    assert sorted(Task.objects.values_list("name", flat=True)) == ["failed", "ok0", "ok1", "ok2"]


def test_prune_with_limits_off_keeps_everything() -> None:
    for n in range(3):
        _result(f"ok{n}", age=timedelta(days=400))

    assert results.prune(max_rows=0, max_age_hours=0) == results.PruneReport(0, 0)
    assert Task.objects.count() == 3


def test_prune_works_in_batches(monkeypatch) -> None:
    monkeypatch.setattr(results, "PRUNE_BATCH", 2)
    for n in range(5):
        _result(f"ok{n}", age=timedelta(days=30))

    assert results.prune(max_rows=0, max_age_hours=24).by_age == 5
    assert not Task.objects.exists()


def test_a_task_lost_at_its_last_attempt_gets_one_failure_result(broker, saved) -> None:
    task_id = async_task(tasks.noop, "lost", broker=broker, hook="tests.support.api_jobs.hook")
    Job.objects.filter(task_id=task_id).update(max_attempts=1)
    [(ack, _payload)] = jobtable.claim(queue=QUEUE)

    # The worker process running it died inside the live node.
    node = jobtable.node(QUEUE)
    [lost] = transitions.worker_lost(alias="default", node=node, by=jobtable.BY)
    failing.lost(lost, reason="its worker process was killed by SIGKILL", owner=node)

    assert lost.id == ack[0]
    assert Job.objects.get(task_id=task_id).state == Job.State.DEAD
    failure = Task.objects.get(id=task_id)
    assert (failure.success, failure.attempt_count, failure.hook) == (
        False,
        1,
        "tests.support.api_jobs.hook",
    )
    assert failure.result == "its worker process was killed by SIGKILL; the attempt did not finish"
    assert [t.id for t in saved] == [task_id]


def test_a_failed_attempt_s_result_is_written_with_its_retry_which_then_replaces_it(
    broker, saved
) -> None:
    task_id = async_task(tasks.noop, "flaky", broker=broker, hook="tests.support.api_jobs.hook")
    [(ack, _payload)] = jobtable.claim(queue=QUEUE)
    node = jobtable.node(QUEUE)
    written_in_transaction = []

    def watch(execute, sql, params, many, context):
        if Task._meta.db_table in sql:
            written_in_transaction.append(connection.in_atomic_block)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        transitions.fail(
            task_id=task_id,
            attempt=ack[1],
            error_type="RuntimeError",
            error_message="flaky",
            retry_at=timezone.now(),  # ready again at once, for any worker
            owner=node,
        )

    # Written before the task was ready again: no retry can finish before it.
    assert written_in_transaction == [True]
    assert [t.success for t in saved] == [False]  # its hook ran, after the commit
    [(retry, payload)] = jobtable.claim(queue=QUEUE)
    package = SignedPackage.loads(payload)
    package.update(success=True, result="ok", stopped=timezone.now(), attempt=retry[1])
    transitions.finish("default", [retry], {retry: package}, owner=node, by=jobtable.BY)
    result = fetch(task_id)
    assert (result.success, result.result, result.attempt_count) == (True, "ok", 2)


def test_a_result_that_cannot_be_written_does_not_hold_back_the_batch(broker) -> None:
    (good_ack, good), (bad_ack, bad) = finished(broker, 2)
    bad["result"] = lambda: "functions do not pickle"
    worker = Worker(queue=QUEUE, node=jobtable.node(QUEUE))
    worker.by = jobtable.BY  # the process that claimed them
    worker.done = [(good_ack, good), (bad_ack, bad)]  # what run_next collected

    assert worker.finish() == 2

    assert not Job.objects.exists()  # both finished
    results_by_id = dict(Task.objects.values_list("id", "result"))
    assert results_by_id[good["id"]] == 0
    assert results_by_id[bad["id"]].startswith("the result could not be saved: ")


def test_a_non_text_group_is_stored_as_text(broker) -> None:
    [(ack, package)] = finished(broker)
    package["group"] = 42  # django-q2's scheduler groups a schedule's runs by its id

    transitions.finish("default", [ack], {ack: package}, owner=jobtable.node(QUEUE))

    assert Task.objects.get(id=package["id"]).group == "42"


def test_a_chain_s_next_link_is_enqueued_following_the_link_that_finished(broker) -> None:
    seen: list[tuple[object, object]] = []

    def receiver(sender, task, **kwargs) -> None:
        seen.append((task["args"], context.following()))

    ((_, package),) = finished(broker)
    package["chain"] = [("tests.support.broker.noop", ("next",))]
    pre_enqueue.connect(receiver, dispatch_uid="test-results-following")
    try:
        results.continue_chains([package], broker)
    finally:
        pre_enqueue.disconnect(dispatch_uid="test-results-following")

    assert len(seen) == 1
    args, following = seen[0]
    assert args == ("next",)
    assert following is package
    assert context.following() is None  # only while the link is enqueued
