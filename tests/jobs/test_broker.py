"""jobs.engine.broker.DatabaseBroker on the test database (PostgreSQL or SQLite): how tasks
get into the queue and what it answers about it. Claims are ``jobs.engine.store``'s
(``test_transitions.py``); these tests take tasks out as a worker does (``jobtable.claim``)."""

from __future__ import annotations

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

from jobs.engine import failing, nodes, transitions
from jobs.engine.broker import DatabaseBroker
from jobs.engine.channels import channel_name
from jobs.engine.listener import Listener
from jobs.engine.worker import Worker
from jobs.models import Job, JobAttempt
from tests.support import broker as tasks
from tests.support import jobtable


@pytest.fixture
def broker() -> DatabaseBroker:
    return DatabaseBroker(list_key="broker-test")


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
    assert jobtable.claim(queue="broker-test") == []


@pytest.mark.django_db
def test_a_running_task_of_a_live_node_is_never_claimed_again(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    jobtable.claim(queue="broker-test")
    # However long ago it was claimed: no lock time, only the owner's liveness counts.
    Job.objects.filter(id=job.id).update(claimed_at=timezone.now() - timedelta(days=3))

    assert jobtable.claim(queue="broker-test") == []
    assert nodes.rescue_dead_nodes() == 0
    assert jobtable.claim(queue="broker-test") == []
    assert Job.objects.get(id=job.id).attempt == 1
    assert (broker.lock_size(), broker.queue_size()) == (1, 0)


@pytest.mark.django_db
def test_finishing_a_task_deletes_its_row_only(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    other = enqueue(broker)
    [(ack, _), _] = jobtable.claim(queue="broker-test")

    assert transitions.finish("default", [ack], {}, owner=jobtable.node()) == {ack}

    assert not Job.objects.filter(id=job.id).exists()
    assert Job.objects.filter(id=other.id).exists()
    assert (broker.lock_size(), broker.queue_size()) == (1, 0)


@pytest.mark.django_db
def test_finishing_a_task_this_node_lost_deletes_nothing(broker: DatabaseBroker) -> None:
    job = enqueue(broker)
    [(ack, _)] = jobtable.claim(queue="broker-test")
    me = jobtable.node()
    # A peer declared this node dead and the task was claimed again elsewhere.
    nodes.declare_dead(me, why="test")
    Job.objects.filter(id=job.id).update(state=Job.State.RUNNING, attempt=2, owner=None)

    assert transitions.finish("default", [ack], {}, owner=me) == set()
    # The right attempt, but not this node's claim.
    assert transitions.finish("default", [(job.id, 2)], {}, owner=me) == set()

    assert Job.objects.filter(id=job.id, attempt=2).exists()


@pytest.mark.django_db(transaction=True)  # a worker's connection is in autocommit
def test_a_worker_makes_an_unreadable_task_dead_with_a_clear_error(
    broker: DatabaseBroker,
) -> None:
    job = enqueue(broker)
    Job.objects.filter(id=job.id).update(payload="not-a-signed-package")
    worker = Worker(queue="broker-test", node=jobtable.node("broker-test"))
    assert worker.claim() == 1

    assert worker.run_next() is None

    job.refresh_from_db()
    assert (job.state, job.attempt, job.owner) == (Job.State.DEAD, 1, None)
    assert job.last_error_type == "UnreadablePayload"
    assert "SECRET_KEY" in job.last_error_message
    attempt = JobAttempt.objects.get(task_id=job.task_id)
    assert (attempt.attempt, attempt.error_type) == (1, "UnreadablePayload")
    assert jobtable.claim(queue="broker-test") == []


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
    [(ack, _), _] = jobtable.claim(queue="broker-test")
    assert transitions.finish("default", [ack], {}, owner=jobtable.node()) == {ack}
    async_task(tasks.unique_task, "k1", broker=broker)
    assert Job.objects.filter(unique_key="broker-test:k1").count() == 1


@pytest.mark.django_db
def test_purge_queue_removes_waiting_tasks_only(broker: DatabaseBroker) -> None:
    enqueue(broker)
    running = enqueue(broker)
    jobtable.claim(bulk=1, queue="broker-test")
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
    assert (copy.list_key, copy.queue, copy.connection) == ("broker-test", "broker-test", "default")


@pytest.mark.django_db(transaction=True)
def test_an_idle_worker_is_woken_by_a_commit_on_postgresql_and_polls_on_sqlite(
    broker: DatabaseBroker,
) -> None:
    if connection.vendor != "postgresql":
        # SQLite has no NOTIFY: a short poll, not the 120 s POLL.
        worker = Worker(queue="broker-test", node=jobtable.node("broker-test"), poll=120)
        began = time.monotonic()
        assert worker.wait() is False
        assert time.monotonic() - began < 5
        return
    listener = Listener("default", "broker-test")
    try:
        assert listener.wait(0) is None  # LISTENs from now on; nothing was sent yet
        with transaction.atomic():
            async_task(tasks.noop, broker=broker)
        # The wait is far longer than the test: only the NOTIFY returns it in time.
        began = time.monotonic()
        assert listener.wait(120) == {""}  # an enqueue's NOTIFY has no payload
        assert time.monotonic() - began < 10
    finally:
        listener.close()


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
        what="the finish to delete the row",
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
        what="the worker to make the task dead",
    )

    job.refresh_from_db()
    assert job.last_error_type == "UnreadablePayload"
    assert not (tmp_path / "never.txt").exists()
    assert worker.stop() == 0


@pytest.mark.django_db
def test_enqueue_stores_a_payload_as_given_and_the_worker_makes_it_dead(
    broker: DatabaseBroker,
) -> None:
    # django-q2's brokers store what they are handed; the worker finds out it is unreadable.
    broker.enqueue("not a signed package")
    [claimed] = jobtable.claim_unstarted(queue="broker-test")
    assert claimed.payload == "not a signed package"
    me = jobtable.node("broker-test")
    attempt = transitions.start(alias="default", row_id=claimed.row_id, node=me)

    failing.unreadable(claimed, attempt=attempt, node=me, alias="default")

    job = Job.objects.get(id=claimed.row_id)
    assert (job.state, job.attempt, job.name) == (Job.State.DEAD, 1, "unreadable payload")
    assert job.last_error_type == "UnreadablePayload"


@pytest.mark.django_db
def test_an_empty_queue_has_nothing_waiting_or_running(broker: DatabaseBroker) -> None:
    assert broker.queue_size() == 0
    assert broker.lock_size() == 0
    assert broker.purge_queue() == 0
