"""jobs.engine.results: results finished with their acknowledgement, and their retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db.models.signals import post_save
from django.utils import timezone
from django_q.models import Task
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from jobs.engine import nodes, results
from jobs.engine.broker import DatabaseBroker
from jobs.models import Job
from tests.support import broker as tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker() -> DatabaseBroker:
    b = DatabaseBroker(list_key="results-test")
    yield b
    b.close_listener()


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
    for ack, payload in broker.claim(bulk=n):
        package = SignedPackage.loads(payload)
        package.update(success=True, result=package["args"][0], stopped=timezone.now(), attempt=1)
        done.append((ack, package))
    return done


def test_a_batch_deletes_its_rows_and_writes_results_once(broker, saved, settings) -> None:
    settings.JOBS_ACK_BATCH_SECONDS = 3600  # only an explicit flush
    done = finished(broker, 3)
    for ack, package in done:
        broker.keep_result(ack, package)
        broker.acknowledge(ack)
    assert Task.objects.count() == 0  # held until the batch is finished

    results.flush_all()
    results.flush_all()  # nothing twice

    assert not Job.objects.exists()
    assert sorted(Task.objects.values_list("result", flat=True)) == [0, 1, 2]
    assert sorted(t.result for t in saved) == [0, 1, 2]  # post_save (hook=) once each


def test_a_node_that_lost_the_task_writes_no_result(broker, saved, settings) -> None:
    settings.JOBS_ACK_BATCH_SECONDS = 0  # finished at once
    [(ack, package)] = finished(broker)
    # Declared dead by a peer, the task handed out again (a new claim holds it).
    nodes.declare_dead(nodes.current_node_id(), why="test")
    Job.objects.filter(id=ack[0]).update(attempt=2, owner=None)

    broker.keep_result(ack, package)
    broker.acknowledge(ack)

    assert Job.objects.filter(id=ack[0]).exists()
    assert not Task.objects.exists()
    assert saved == []


def test_a_failure_in_the_batch_keeps_it_for_the_next_flush(broker, settings, monkeypatch) -> None:
    settings.JOBS_ACK_BATCH_SECONDS = 3600
    [(ack, package)] = finished(broker)
    broker.keep_result(ack, package)
    broker.acknowledge(ack)
    original = results.finish

    def down(*args, **kwargs):
        raise OperationalError("database went away")

    monkeypatch.setattr(results, "finish", down)
    with pytest.raises(OperationalError):
        results.flush_all()
    monkeypatch.setattr(results, "finish", original)
    results.flush_all()

    assert not Job.objects.exists()
    assert Task.objects.get().result == 0


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
    [(ack, _payload)] = broker.claim()

    # The worker process running it died inside the live node.
    assert nodes.hand_out_lost(nodes.current_node_id(), [ack]) == 1

    assert Job.objects.get(task_id=task_id).state == Job.State.DEAD
    failure = Task.objects.get(id=task_id)
    assert (failure.success, failure.attempt_count, failure.hook) == (
        False,
        1,
        "tests.support.api_jobs.hook",
    )
    assert "worker process running this attempt died" in failure.result
    assert [t.id for t in saved] == [task_id]


def test_a_result_that_cannot_be_written_does_not_hold_back_the_batch(broker, settings) -> None:
    settings.JOBS_ACK_BATCH_SECONDS = 3600
    (good_ack, good), (bad_ack, bad) = finished(broker, 2)
    bad["result"] = lambda: "functions do not pickle"
    bad["group"] = 7  # not a string: stored as text
    for ack, package in ((good_ack, good), (bad_ack, bad)):
        broker.keep_result(ack, package)
        broker.acknowledge(ack)

    results.flush_all()

    assert not Job.objects.exists()  # both finished
    assert list(Task.objects.values_list("id", flat=True)) == [good["id"]]


def test_a_non_text_group_is_stored_as_text(broker, settings) -> None:
    settings.JOBS_ACK_BATCH_SECONDS = 0
    [(ack, package)] = finished(broker)
    package["group"] = 42  # django-q2's scheduler groups a schedule's runs by its id
    broker.keep_result(ack, package)
    broker.acknowledge(ack)

    assert Task.objects.get(id=package["id"]).group == "42"
