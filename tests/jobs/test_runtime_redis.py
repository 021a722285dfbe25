"""QUEUE_REDIS_URL: tasks go through Redis; heartbeats and schedules stay in the database."""

from __future__ import annotations

import pytest
import redis
from django_q.brokers import get_broker
from django_q.conf import Conf

from jobs import registry
from jobs.models import Job, WorkerHeartbeat
from tests.support import runtime as support
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The local Redis CI provides; database 15 keeps the test away from anything else.
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_queue():
    client = redis.from_url(REDIS_URL)
    client.flushdb()
    # This process enqueues the way a web process with QUEUE_REDIS_URL does.
    with support.conf(BROKER_CLASS=None, ORM=None, REDIS=REDIS_URL):
        yield client
    client.flushdb()


def test_the_redis_broker_runs_registered_jobs(worker_factory, redis_queue) -> None:
    broker = get_broker()
    assert type(broker).__name__ == "Redis"
    WorkerHeartbeat.objects.all().delete()
    worker = worker_factory(QUEUE_REDIS_URL=REDIS_URL)

    ids = registry.enqueue_many("tests.echo", [("r1",), ("r2",)])
    ids.append(registry.enqueue("tests.echo", "r3"))

    def finished() -> set[str]:
        return {e["task_id"] for e in log_events(worker.log(), "task finished") if e["success"]}

    worker.wait_until(lambda: set(ids) <= finished(), timeout=20, what="the Redis tasks")
    inside = {e["value"] for e in log_events(worker.log(), "inside job")}
    assert {"r1", "r2", "r3"} <= inside
    assert broker.queue_size() == 0
    assert not Job.objects.exists()  # nothing went through the jobs.Job table
    # The start-up heartbeat went through Redis too, and was recorded in the database.
    worker.wait_until(
        lambda: WorkerHeartbeat.objects.filter(cluster=Conf.CLUSTER_NAME).exists(),
        timeout=10,
        what="the heartbeat",
    )
    assert worker.stop() == 0
