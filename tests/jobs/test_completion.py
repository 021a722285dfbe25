"""jobs.completion: transactional jobs, declared and run through the public paths."""

from __future__ import annotations

import pytest
from django.db import connection
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from jobs import nodes, registry, runtime
from jobs.broker import DatabaseBroker
from jobs.completion import ClaimLost
from jobs.models import Job
from jobs.registry import TransactionalUnsupported
from tests.support import transactional as tx
from tests.support.runtime import conf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ledger():
    with connection.cursor() as cursor:
        for sql in tx.TABLES_SQL:
            cursor.execute(sql)
        cursor.execute("DELETE FROM tx_effect")
        cursor.execute("DELETE FROM tx_counter")
        cursor.execute("INSERT INTO tx_counter (id, n) VALUES (1, 0)")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE tx_effect")
        cursor.execute("DROP TABLE tx_counter")


def effects() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM tx_effect")
        return [row[0] for row in cursor.fetchall()]


def test_declaring_a_transactional_job_on_the_redis_broker_is_refused() -> None:
    with conf(BROKER_CLASS=None), pytest.raises(TransactionalUnsupported, match="database broker"):
        registry.job("tests.tx_elsewhere", transactional=True)(tx._apply)
    with pytest.raises(registry.UnknownJob):
        registry.get("tests.tx_elsewhere")


def test_enqueueing_one_on_the_redis_broker_is_refused_before_anything_is_sent() -> None:
    with conf(BROKER_CLASS=None, ORM=None), pytest.raises(TransactionalUnsupported):
        async_task("tests.support.transactional.tx_record", "k")
    assert not Job.objects.exists()


def test_called_outside_a_worker_it_runs_in_one_transaction(ledger, tmp_path) -> None:
    assert tx.tx_record("direct") == "direct"
    with pytest.raises(RuntimeError, match="fails after writing"):
        tx.tx_fails_once("rolled-back", str(tmp_path / "marker"))
    assert effects() == ["direct"]


def test_a_node_that_lost_the_claim_rolls_its_writes_back(ledger) -> None:
    broker = DatabaseBroker()
    task_id = async_task("tests.support.transactional.tx_record", "lost", broker=broker)
    [(ack, payload)] = broker.claim()
    task = {**SignedPackage.loads(payload), "ack_id": ack}
    runtime.on_pre_execute(func=tx.tx_record, task=task)
    try:
        # A peer declared this node dead and the task was claimed again elsewhere.
        nodes.declare_dead(nodes.current_node_id(), why="test")
        Job.objects.filter(id=ack[0]).update(attempt=ack[1] + 1, owner=None)
        with pytest.raises(ClaimLost, match="no longer this node's"):
            tx.tx_record("lost")
    finally:
        runtime.on_post_execute_in_worker(func=tx.tx_record, task=task)
    assert effects() == []
    assert Job.objects.filter(task_id=task_id).exists()


def test_a_completed_run_deletes_its_row_with_its_writes(ledger) -> None:
    broker = DatabaseBroker()
    task_id = async_task("tests.support.transactional.tx_record", "done", broker=broker)
    [(ack, payload)] = broker.claim()
    task = {**SignedPackage.loads(payload), "ack_id": ack}
    runtime.on_pre_execute(func=tx.tx_record, task=task)
    try:
        assert tx.tx_record("done") == "done"
    finally:
        runtime.on_post_execute_in_worker(func=tx.tx_record, task=task)
    assert effects() == ["done"]
    assert not Job.objects.filter(task_id=task_id).exists()
    assert task["completed_in_worker"] is True  # the monitor only announces it
