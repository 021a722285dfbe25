"""jobs.engine.completion: transactional jobs, declared and run through the public paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db.models.signals import post_save
from django_q.conf import Conf
from django_q.models import Task
from django_q.signals import pre_execute
from django_q.tasks import async_task

from jobs.engine import nodes
from jobs.engine.worker import Worker
from jobs.models import Job, JobAttempt
from tests.support import transactional as tx

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ledger():
    with tx.ledger_tables() as tables:
        yield tables


def test_called_outside_a_worker_it_runs_in_one_transaction(ledger, tmp_path) -> None:
    assert tx.tx_record("direct") == "direct"
    with pytest.raises(RuntimeError, match="fails after writing"):
        tx.tx_fails_once("rolled-back", str(tmp_path / "marker"))
    assert ledger.keys() == {"direct"}


@pytest.fixture
def worker() -> Worker:
    """A worker process's loop of this process's node (complete() reads the node)."""
    return Worker(queue=Conf.CLUSTER_NAME, node=nodes.register(cluster=Conf.CLUSTER_NAME))


@pytest.fixture
def saved() -> Iterator[list[Task]]:
    seen: list[Task] = []

    def receiver(sender, instance, **kwargs) -> None:
        seen.append(instance)

    post_save.connect(receiver, sender=Task, dispatch_uid="test-completion-saved")
    yield seen
    post_save.disconnect(dispatch_uid="test-completion-saved", sender=Task)


def test_a_node_that_lost_the_claim_rolls_its_writes_back(ledger, worker) -> None:
    task_id = async_task("tests.support.transactional.tx_record", "lost")
    assert worker.claim() == 1

    def peer_declares_this_node_dead(**kwargs) -> None:
        nodes.declare_dead(worker.node, why="test")  # the task is handed out again

    pre_execute.connect(peer_declares_this_node_dead, dispatch_uid="test-completion-lost")
    try:
        outcome = worker.run_next()
    finally:
        pre_execute.disconnect(dispatch_uid="test-completion-lost")

    assert outcome.error_type == "jobs.engine.completion.ClaimLost"
    assert "no longer this node's" in outcome.message
    assert ledger.keys() == set()
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt, job.owner) == (Job.State.QUEUED, 1, None)
    # The lost node's failure report is dropped: only the rescue's lost attempt is kept.
    assert list(JobAttempt.objects.values_list("attempt", "error_type")) == [(1, "WorkerLost")]


def test_a_completed_run_deletes_its_row_with_its_writes(ledger, worker, saved) -> None:
    task_id = async_task("tests.support.transactional.tx_record", "done")
    assert worker.claim() == 1

    outcome = worker.run_next()

    assert (outcome.success, outcome.value) == (True, "done")
    assert ledger.keys() == {"done"}
    assert not Job.objects.filter(task_id=task_id).exists()
    assert Task.objects.get(id=task_id).result == "done"
    assert [t.id for t in saved] == [task_id]  # hook= once, announced after the commit
    assert worker.done == []  # finished already: nothing left for the worker's batch


def test_a_result_too_large_to_keep_rolls_the_writes_back_and_fails_the_attempt(
    ledger, worker, settings
) -> None:
    settings.JOBS_RESULT_MAX_BYTES = 1000
    task_id = async_task("tests.support.transactional.tx_returns", "big", "x" * 5000)
    assert worker.claim() == 1

    outcome = worker.run_next()

    assert outcome is not None
    assert outcome.error_type == "jobs.engine.execute.ResultRefused"
    assert ledger.keys() == set()  # the task's own write went with it
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt) == (Job.State.RETRYING, 1)
    [attempt] = JobAttempt.objects.filter(task_id=task_id)
    assert "over the 1,000-byte limit" in attempt.error_message
