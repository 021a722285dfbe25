"""A real qcluster runs registered jobs on each project broker; heartbeats stay in the database."""

from __future__ import annotations

import pytest
from django_q.brokers import get_broker
from django_q.conf import Conf

from jobs import registry
from jobs.models import Job, WorkerHeartbeat
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_cluster_runs_registered_jobs(worker_factory, queue_broker) -> None:
    broker = get_broker()
    WorkerHeartbeat.objects.all().delete()
    worker = worker_factory(**queue_broker.env)

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
