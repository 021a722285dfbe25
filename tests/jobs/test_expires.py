"""Deadlines: ``expires=`` on enqueue, on ``async_task`` or in ``@job``; a task not
started by then never runs and ends ``expired``, checked by the worker before it starts
a claimed task and swept by every node for tasks nobody claims."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_q.tasks import async_task

from jobs.engine import registry, transitions
from jobs.engine.worker import Worker
from jobs.models import Job
from tests.support import flow_jobs, jobtable  # noqa: F401 (flow_jobs registers the jobs)
from tests.support.waiting import wait_until

QUEUE = "flow-expires"
FUNC = "tests.support.flow_jobs.expiring"


@pytest.fixture
def make_worker() -> Iterator[Callable[[], Worker]]:
    """In-process workers of ``QUEUE``, closed at teardown (after the test's reads)."""
    made: list[Worker] = []

    def make() -> Worker:
        made.append(Worker(queue=QUEUE, node=jobtable.node(QUEUE)))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def _row(task_id: str) -> Job:
    return Job.objects.get(task_id=task_id)


@pytest.mark.django_db
def test_expires_takes_seconds_or_a_datetime_and_refuses_anything_else() -> None:
    before = timezone.now()
    in_seconds = registry.enqueue("tests.flow.steady", "/x", 0, expires=90, on_commit=False)
    at = timezone.now() + timedelta(hours=2)
    at_time = registry.enqueue("tests.flow.steady", "/x", 0, expires=at, on_commit=False)
    declared = registry.enqueue("tests.flow.expiring", "/x", "k", on_commit=False)
    none = registry.enqueue("tests.flow.steady", "/x", 0, on_commit=False)
    expires = _row(in_seconds).expires_at
    assert expires is not None
    assert before + timedelta(seconds=90) <= expires <= timezone.now() + timedelta(seconds=90)
    assert _row(at_time).expires_at == at
    declared_at = _row(declared).expires_at  # @job(expires=3600)
    assert declared_at is not None
    assert declared_at - before >= timedelta(seconds=3599)
    assert _row(none).expires_at is None
    with pytest.raises(TypeError, match="expires= takes seconds or a datetime"):
        registry.enqueue("tests.flow.steady", "/x", 0, expires="soon")
    with pytest.raises(ValueError, match="from 0 to ten years"):
        registry.enqueue("tests.flow.steady", "/x", 0, expires=-5)
    assert Job.objects.count() == 4


@pytest.mark.django_db
def test_async_task_takes_expires_as_an_option_not_an_argument() -> None:
    task_id = async_task(FUNC, "/x", "k", expires=30)
    job = _row(task_id)
    assert job.expires_at is not None
    assert timedelta(seconds=25) < job.expires_at - timezone.now() <= timedelta(seconds=30)
    assert "expires" not in registry.build_package(registry.get("tests.flow.steady"), (), {})


@pytest.mark.django_db(transaction=True)
def test_a_claimed_task_past_its_deadline_ends_expired_without_running(
    tmp_path: Path, make_worker: Callable[[], Worker]
) -> None:
    task_id = registry.enqueue(
        "tests.flow.expiring", str(tmp_path), "claimed", expires=0.2, on_commit=False
    )
    Job.objects.filter(task_id=task_id).update(queue=QUEUE)
    wait_until(lambda: timezone.now() > _row(task_id).expires_at, timeout=5, what="the deadline")
    worker = make_worker()
    assert worker.claim() == 1
    assert worker.run_next() is None
    job = _row(task_id)
    assert (job.state, job.attempt, job.last_error_type) == (Job.State.EXPIRED, 0, "Expired")
    assert not (tmp_path / "expiring.claimed").exists()


@pytest.mark.django_db(transaction=True)
def test_a_retried_expired_task_runs(tmp_path: Path, make_worker: Callable[[], Worker]) -> None:
    task_id = registry.enqueue(
        "tests.flow.expiring", str(tmp_path), "retried", expires=0, on_commit=False
    )
    assert transitions.expire_due() == 1
    call_command("retry_failed_jobs", str(_row(task_id).id), stdout=StringIO())
    Job.objects.filter(task_id=task_id).update(queue=QUEUE)
    assert _row(task_id).expires_at is None  # the retry lifts the deadline
    worker = make_worker()
    assert worker.claim() == 1
    outcome = worker.run_next()
    assert outcome is not None
    assert outcome.success
    assert (tmp_path / "expiring.retried").exists()


@pytest.mark.django_db
def test_the_sweep_expires_waiting_tasks_past_their_deadline_only(client: Client) -> None:
    past = registry.enqueue("tests.flow.expiring", "/x", "past", expires=0, on_commit=False)
    future = registry.enqueue("tests.flow.expiring", "/x", "future", expires=600, on_commit=False)
    assert transitions.expire_due() == 1
    assert (_row(past).state, _row(future).state) == (Job.State.EXPIRED, Job.State.QUEUED)
    assert transitions.expire_due() == 0
    body = client.get("/healthz").json()
    assert body["expired"]["count"] == 1
    out = StringIO()
    call_command("list_failed_jobs", "--state", "expired", stdout=out)
    [row] = out.getvalue().splitlines()[1:]
    assert row.split()[:4] == [str(_row(past).id), "tests.flow.expiring", FUNC, "expired"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_on_a_real_node_expired_tasks_never_start(worker_factory, tmp_path: Path) -> None:
    tmp_path = tmp_path / "markers"
    tmp_path.mkdir()
    # Tasks nobody claims (no worker serves their queue) are swept; tasks a worker claims
    # after their deadline are expired at start. Neither ever starts: no marker.
    swept = [
        async_task(FUNC, str(tmp_path), f"swept{i}", expires=1, cluster=QUEUE) for i in range(3)
    ]
    late = [registry.enqueue("tests.flow.expiring", str(tmp_path), f"late{i}", expires=0.5)
            for i in range(3)]  # fmt: skip
    registry.enqueue("tests.flow.expiring", str(tmp_path), "kept", expires=600)
    wait_until(lambda: timezone.now() > _row(late[-1]).expires_at, timeout=5, what="deadlines")
    worker = worker_factory(Q_WORKERS="2")
    worker.wait_until(
        lambda: Job.objects.filter(task_id__in=swept + late, state=Job.State.EXPIRED).count() == 6,
        timeout=30,
        what="every task past its deadline to expire",
    )
    worker.wait_until(
        lambda: (tmp_path / "expiring.kept").exists(), timeout=30, what="the task in time to run"
    )
    markers = sorted(p.name for p in tmp_path.iterdir())
    assert markers == ["expiring.kept"]  # none of the expired ones ever started
    assert Job.objects.filter(task_id__in=swept + late, attempt=0).count() == 6
    assert worker.stop() == 0
