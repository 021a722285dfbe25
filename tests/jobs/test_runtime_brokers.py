"""A real qcluster runs registered jobs on the database broker; heartbeats go through it too."""

from __future__ import annotations

import pytest
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.tasks import async_chain, async_task, result, result_group

from jobs.engine import registry
from jobs.models import Job, WorkerHeartbeat
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_cluster_runs_registered_jobs(worker_factory) -> None:
    broker = get_broker()
    WorkerHeartbeat.objects.all().delete()
    worker = worker_factory(JOBS_LOG_SUCCESSES="true")

    ids = registry.enqueue_many("tests.echo", [("r1",), ("r2",)])
    ids.append(registry.enqueue("tests.echo", "r3"))

    def finished() -> set[str]:
        return {e["task_id"] for e in log_events(worker.log(), "task finished") if e["success"]}

    worker.wait_until(lambda: set(ids) <= finished(), timeout=20, what="the tasks")
    inside = {e["value"] for e in log_events(worker.log(), "inside job")}
    assert {"r1", "r2", "r3"} <= inside
    # Acknowledged after the run's log line: the monitor may be a few ms behind.
    worker.wait_until(
        lambda: broker.queue_size() == 0 and not Job.objects.filter(task_id__in=ids).exists(),
        timeout=10,
        what="an empty queue",
    )
    # The start-up heartbeat went through the broker too, and was recorded in the database.
    worker.wait_until(
        lambda: WorkerHeartbeat.objects.filter(cluster=Conf.CLUSTER_NAME).exists(),
        timeout=10,
        what="the heartbeat",
    )
    assert worker.stop() == 0


def test_results_hooks_and_chains_work(worker_factory, tmp_path):
    api_log = tmp_path / "api.jsonl"
    worker = worker_factory(API_TEST_LOG=str(api_log))
    jobs = "tests.support.api_jobs"

    task_id = async_task(f"{jobs}.add", 20, 22, hook=f"{jobs}.hook")
    chain = async_chain([(f"{jobs}.link", ("p",)), (f"{jobs}.link", ("q",))])

    assert result(task_id, wait=20_000) == 42
    assert sorted(result_group(chain, count=2, wait=20_000)) == ["p", "q"]
    worker.wait_until(
        lambda: api_log.exists() and '"kind": "hook"' in api_log.read_text(),
        timeout=20,
        what="the hook call",
    )
    hooks = [line for line in api_log.read_text().splitlines() if '"kind": "hook"' in line]
    assert len(hooks) == 1
    assert task_id in hooks[0]
    assert worker.stop() == 0
