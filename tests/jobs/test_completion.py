"""jobs.engine.completion: transactional jobs, declared and run through the public paths."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from jobs.engine import nodes, registry, runtime
from jobs.engine.broker import DatabaseBroker
from jobs.engine.completion import ClaimLost
from jobs.engine.registry import TransactionalUnsupported
from jobs.models import Job
from tests.support import transactional as tx
from tests.support.runtime import conf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ledger():
    with tx.ledger_tables() as tables:
        yield tables


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
    assert ledger.keys() == {"direct"}


@contextlib.contextmanager
def claimed_as_in_a_worker(key: str) -> Iterator[tuple[str, tuple[int, int], dict]]:
    """The task claimed by this process's node, with the runtime around it as a worker has."""
    broker = DatabaseBroker()
    task_id = async_task("tests.support.transactional.tx_record", key, broker=broker)
    [(ack, payload)] = broker.claim()
    task = {**SignedPackage.loads(payload), "ack_id": ack}
    runtime.on_pre_execute(func=tx.tx_record, task=task)
    try:
        yield task_id, ack, task
    finally:
        runtime.on_post_execute_in_worker(func=tx.tx_record, task=task)
        broker.close_listener()


def test_a_node_that_lost_the_claim_rolls_its_writes_back(ledger) -> None:
    with claimed_as_in_a_worker("lost") as (task_id, ack, _task):
        # A peer declared this node dead and the task was claimed again elsewhere.
        nodes.declare_dead(nodes.current_node_id(), why="test")
        Job.objects.filter(id=ack[0]).update(attempt=ack[1] + 1, owner=None)
        with pytest.raises(ClaimLost, match="no longer this node's"):
            tx.tx_record("lost")
    assert ledger.keys() == set()
    assert Job.objects.filter(task_id=task_id).exists()


def test_a_completed_run_deletes_its_row_with_its_writes(ledger) -> None:
    with claimed_as_in_a_worker("done") as (task_id, _ack, task):
        assert tx.tx_record("done") == "done"
    assert ledger.keys() == {"done"}
    assert not Job.objects.filter(task_id=task_id).exists()
    assert task["completed_in_worker"] is True  # the monitor only announces it
