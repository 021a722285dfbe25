"""jobs.engine.broker.DatabaseBroker on the test database (PostgreSQL or SQLite)."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from jobs.engine import nodes, results
from jobs.engine.broker import DatabaseBroker
from jobs.engine.channels import channel_name
from jobs.models import Job, JobAttempt, WorkerNode
from tests.support import broker as tasks


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> DatabaseBroker:
    monkeypatch.setattr(Conf, "BULK", 10)
    monkeypatch.setattr(Conf, "POLL", 0.05)
    b = DatabaseBroker(list_key="broker-test")
    yield b
    b.close_listener()


def enqueue(broker: DatabaseBroker, *args: object, func=tasks.noop, **kwargs: object) -> Job:
    task_id = async_task(func, *args, broker=broker, **kwargs)
    return Job.objects.get(task_id=task_id)


def payload_id(payload: str) -> str:
    return SignedPackage.loads(payload)["id"]


def test_settings_make_it_the_broker() -> None:
    assert isinstance(get_broker(), DatabaseBroker)
    assert Conf.SAVE_LIMIT == 0  # results kept; jobs.engine.results prunes them


@pytest.mark.django_db
def test_enqueue_writes_a_queued_row_with_the_signed_payload(broker: DatabaseBroker) -> None:
    job = enqueue(broker, "a", key=1)

    assert job.state == Job.State.QUEUED
    assert job.queue == "broker-test"
    assert job.func == "tests.support.broker.noop"
    assert job.attempt == 0
    package = SignedPackage.loads(job.payload)
    assert package["args"] == ("a",)
    assert package["kwargs"] == {"key": 1}


@pytest.mark.django_db
def test_enqueue_inside_a_rolled_back_transaction_leaves_no_row(broker: DatabaseBroker) -> None:
    class Rollback(Exception):
        pass

    def view() -> None:
        with transaction.atomic():
            async_task(tasks.noop, broker=broker)
            assert Job.objects.count() == 1
            raise Rollback

    with pytest.raises(Rollback):
        view()

    assert Job.objects.count() == 0
    assert broker.claim() == []


@pytest.mark.django_db
def test_claim_order_is_priority_then_fifo(broker: DatabaseBroker) -> None:
    low_first = enqueue(broker, "low-1")
    high = enqueue(broker, "high")
    low_second = enqueue(broker, "low-2")
    urgent = enqueue(broker, "urgent")
    Job.objects.filter(id=high.id).update(priority=5)
    Job.objects.filter(id=urgent.id).update(priority=9)

    first = broker.claim(bulk=3)
    second = broker.claim(bulk=3)

    assert [ack[0] for ack, _ in first] == [urgent.id, high.id, low_first.id]
    assert [ack[0] for ack, _ in second] == [low_second.id]
    assert payload_id(first[0][1]) == urgent.task_id


@pytest.mark.django_db
def test_claim_marks_running_and_owned_by_this_process_node(broker: DatabaseBroker) -> None:
    first = enqueue(broker, timeout=30)
    second = enqueue(broker)
    before = timezone.now()

    claimed = broker.claim()

    assert [ack for ack, _ in claimed] == [(first.id, 1), (second.id, 1)]
    node = nodes.current_node_id()
    assert WorkerNode.objects.filter(id=node, pid=os.getpid()).exists()
    for job in (first, second):
        ready_at = job.run_at
        job.refresh_from_db()
        assert job.state == Job.State.RUNNING
        assert job.owner == node
        assert job.claimed_at >= before
        assert job.claimed_by.startswith(Conf.CLUSTER_NAME)
        assert job.run_at == ready_at  # kept: a task handed back keeps its place
    assert broker.lock_size() == 2
    assert broker.queue_size() == 0


@pytest.mark.django_db
def test_a_running_task_of_a_live_node_is_never_claimed_again(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    broker.claim()
    # However long ago it was claimed: no lock time, only the owner's liveness counts.
    Job.objects.filter(id=job.id).update(claimed_at=timezone.now() - timedelta(days=3))

    assert broker.claim() == []
    assert nodes.rescue_dead_nodes() == 0
    assert broker.claim() == []
    assert Job.objects.get(id=job.id).attempt == 1


@pytest.mark.django_db
def test_future_retries_are_not_claimed_until_due(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    Job.objects.filter(id=job.id).update(
        state=Job.State.RETRYING, attempt=1, run_at=timezone.now() + timedelta(hours=1)
    )
    assert broker.claim() == []
    assert broker.queue_size() == 1

    Job.objects.filter(id=job.id).update(run_at=timezone.now() - timedelta(seconds=1))
    assert [ack for ack, _ in broker.claim()] == [(job.id, 2)]


@pytest.mark.django_db
def test_acknowledge_deletes_the_row(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    other = enqueue(broker)
    [(ack, _), _] = broker.claim()

    broker.acknowledge(ack)

    assert not Job.objects.filter(id=job.id).exists()
    assert Job.objects.filter(id=other.id).exists()


@pytest.mark.django_db
def test_acknowledging_a_task_this_node_lost_deletes_nothing(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    [(ack, _)] = broker.claim()
    # A peer declared this node dead and the task was claimed again elsewhere.
    nodes.declare_dead(nodes.current_node_id(), why="test")
    Job.objects.filter(id=job.id).update(state=Job.State.RUNNING, attempt=2, owner=None)

    broker.acknowledge(ack)
    broker.acknowledge((job.id, 2))  # the right attempt, but not this node's claim

    assert Job.objects.filter(id=job.id, attempt=2).exists()


@pytest.mark.django_db(transaction=True)
def test_acknowledgements_are_deleted_in_batches(settings) -> None:
    settings.JOBS_ACK_BATCH_SECONDS = 3600  # only an explicit flush (or a full batch)
    b = DatabaseBroker(list_key="broker-test")
    first, second, kept = (enqueue(b).id for _ in range(3))
    claimed = dict(b.claim())

    b.acknowledge((first, 1))
    b.acknowledge((second, 1))
    assert Job.objects.filter(id__in=[first, second]).count() == 2  # held in the batch

    results.flush_all()

    assert list(Job.objects.values_list("id", flat=True)) == [kept]
    assert len(claimed) == 3


@pytest.mark.django_db(transaction=True)
def test_stopping_the_ack_threads_flushes_and_ends_them(settings) -> None:
    settings.JOBS_ACK_BATCH_SECONDS = 3600
    b = DatabaseBroker(list_key="broker-test")
    first, kept = (enqueue(b).id for _ in range(2))
    b.claim()
    b.acknowledge((first, 1))
    threads = [t for t in threading.enumerate() if t.name == "jobs-finisher"]
    assert threads

    results.stop_all()

    assert list(Job.objects.values_list("id", flat=True)) == [kept]
    assert not any(thread.is_alive() for thread in threads)


@pytest.mark.django_db
def test_fail_makes_the_task_dead_with_a_clear_error(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    Job.objects.filter(id=job.id).update(payload="not-a-signed-package")
    [(ack, payload)] = broker.claim()
    with pytest.raises(Exception):  # noqa: B017,PT011 - what the pusher catches
        SignedPackage.loads(payload)

    broker.fail(ack)

    job.refresh_from_db()
    assert job.state == Job.State.DEAD
    assert job.last_error_type == "UnreadablePayload"
    assert "SECRET_KEY" in job.last_error_message
    attempt = JobAttempt.objects.get(task_id=job.task_id)
    assert (attempt.attempt, attempt.error_type) == (1, "UnreadablePayload")
    assert broker.claim() == []


@pytest.mark.django_db
def test_duplicate_active_unique_task_is_a_no_op(broker: DatabaseBroker) -> None:
    with transaction.atomic():
        async_task(tasks.unique_task, "k1", broker=broker)
        async_task(tasks.unique_task, "k1", broker=broker)
        async_task(tasks.unique_task, "k2", broker=broker)
        # The caller's transaction is still usable after the duplicate.
        assert Job.objects.filter(queue="broker-test").count() == 2

    assert sorted(Job.objects.values_list("unique_key", flat=True)) == [
        "broker-test:k1",
        "broker-test:k2",
    ]
    # Once the task finished (row deleted), the key can be enqueued again.
    [(ack, _), _] = broker.claim()
    broker.acknowledge(ack)
    async_task(tasks.unique_task, "k1", broker=broker)
    assert Job.objects.filter(unique_key="broker-test:k1").count() == 1


@pytest.mark.django_db
def test_purge_queue_removes_waiting_tasks_only(broker: DatabaseBroker) -> None:
    enqueue(broker)
    running = enqueue(broker)
    broker.claim(bulk=1)
    Job.objects.filter(id=running.id).update(priority=-1)  # not the claimed one
    enqueue(broker)

    assert broker.queue_size() == 2
    assert broker.purge_queue() == 2
    assert list(Job.objects.values_list("state", flat=True)) == [Job.State.RUNNING]


@pytest.mark.django_db
def test_ping_and_info(broker: DatabaseBroker) -> None:
    assert broker.ping() is True
    assert connection.vendor in broker.info()


def test_channel_name_fits_an_identifier() -> None:
    assert channel_name("tablo") == "jobs_tablo"
    assert len(channel_name("q" * 200)) <= 63


def test_broker_pickles_without_its_connections(broker: DatabaseBroker) -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(broker))  # noqa: S301 - our own object
    assert copy.list_key == "broker-test"
    assert copy._listener is None


def _claim_all(results: list, errors: list, barrier: threading.Barrier) -> None:
    b = DatabaseBroker(list_key="broker-test")
    try:
        barrier.wait()
        while True:
            claimed = b.claim(bulk=7)
            if not claimed:
                # Another claimer may hold rows it skipped: make sure the queue is empty.
                if not Job.objects.filter(queue="broker-test", state="queued").exists():
                    break
                continue
            results.extend(ack for ack, _ in claimed)
    except Exception as exc:  # surfaced by the test
        errors.append(exc)
    finally:
        b.close_listener()
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_brokers_never_claim_the_same_row() -> None:
    b = DatabaseBroker(list_key="broker-test")
    ids = {enqueue(b, n).id for n in range(150)}
    results: list = []
    errors: list = []
    barrier = threading.Barrier(4)
    threads = [
        threading.Thread(target=_claim_all, args=(results, errors, barrier)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    claimed_ids = [row_id for row_id, _ in results]
    assert len(claimed_ids) == len(set(claimed_ids))  # no row handed out twice
    assert set(claimed_ids) == ids
    assert Job.objects.exclude(state=Job.State.RUNNING).count() == 0


@pytest.mark.django_db(transaction=True)
def test_an_enqueue_wakes_a_waiting_dequeue(monkeypatch: pytest.MonkeyPatch) -> None:
    # The wait is far longer than the join below: only the NOTIFY (PostgreSQL) or
    # SQLite's short poll can return the task in time.
    monkeypatch.setattr(Conf, "POLL", 120)
    waiting = DatabaseBroker(list_key="broker-test")
    got: list = []
    listening = threading.Event()

    def consume() -> None:
        try:
            if waiting.is_postgresql:
                waiting._ensure_listener()
            listening.set()
            # Like the pusher's loop. On PostgreSQL one call blocks on LISTEN for
            # up to POLL (120 s) unless the NOTIFY arrives; SQLite polls briefly.
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                got.extend(waiting.dequeue() or [])
        finally:
            waiting.close_listener()
            connection.close()

    thread = threading.Thread(target=consume)
    thread.start()
    assert listening.wait(30)
    time.sleep(0.3)  # let it reach the wait (the result is the same if it has not)
    task_id = async_task(tasks.noop, broker=DatabaseBroker(list_key="broker-test"))
    thread.join(20)

    assert not thread.is_alive()
    assert [payload_id(p) for _, p in got] == [task_id]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_runs_a_task_to_success(worker_factory, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    worker = worker_factory()

    task_id = async_task(tasks.touch, str(target), "ran")

    worker.wait_until(target.exists, timeout=30, what="the task to run")
    assert target.read_text() == "ran"
    worker.wait_until(
        lambda: not Job.objects.filter(task_id=task_id).exists(),
        timeout=30,
        what="the acknowledgement to delete the row",
    )
    assert worker.stop() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_makes_an_unreadable_task_dead(worker_factory, tmp_path: Path) -> None:
    broker = DatabaseBroker(list_key=Conf.CLUSTER_NAME)
    job = enqueue(broker, str(tmp_path / "never.txt"), func=tasks.touch)
    Job.objects.filter(id=job.id).update(payload="signed-with-another-key")
    worker = worker_factory()

    worker.wait_until(
        lambda: Job.objects.get(id=job.id).state == Job.State.DEAD,
        timeout=30,
        what="the pusher to fail the task",
    )

    job.refresh_from_db()
    assert job.last_error_type == "UnreadablePayload"
    assert not (tmp_path / "never.txt").exists()
    assert worker.stop() == 0


@pytest.mark.django_db
def test_enqueue_stores_a_payload_as_given_and_fail_makes_it_dead(broker: DatabaseBroker) -> None:
    # django-q2's brokers store what they are handed; the pusher finds out it is unreadable.
    broker.enqueue("not a signed package")

    [(ack, payload)] = broker.claim()
    assert payload == "not a signed package"
    broker.fail(ack)
    job = Job.objects.get(id=ack[0])
    assert job.state == Job.State.DEAD
    assert job.last_error_type == "UnreadablePayload"


@pytest.mark.django_db
def test_an_empty_dequeue_returns_none_like_django_q2s_brokers(broker: DatabaseBroker) -> None:
    assert broker.dequeue() is None
    assert broker.queue_size() == 0
    assert broker.lock_size() == 0
