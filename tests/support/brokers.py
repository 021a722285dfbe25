"""Both project brokers behind one fixture: contract tests run once per broker.

``queue_broker`` patches django-q2's ``Conf`` in the test process (where tests
enqueue and inspect) and gives the environment a real ``qcluster`` needs to
use the same broker. Redis tests use one database of the local Redis (CI starts
it), flushed around each test: ``TABLO_TEST_REDIS_DB`` (default 9), and under
pytest-xdist the next ones for the further workers (the benchmarks' 10 and 14
skipped), so that runs sharing one Redis can each take their own. A test refuses
a database that another live test process marked as its own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs.models import Job
from tests.support.runtime import conf

# The benchmarks' databases (benchmarks/): never flushed by a test run.
BENCHMARK_REDIS_DBS = frozenset({10, 14})


def redis_test_db(environ: dict[str, str] | os._Environ = os.environ) -> int:
    """This test process's Redis database: the chosen one, or the n-th after it for xdist's gwN."""
    first = int(environ.get("TABLO_TEST_REDIS_DB", "9"))
    if not 0 <= first <= 15:
        raise ValueError(f"TABLO_TEST_REDIS_DB must be 0-15, not {first}")
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    usable = [db for db in (*range(first, 16), *range(first)) if db not in BENCHMARK_REDIS_DBS]
    if index >= len(usable):
        raise ValueError(f"no Redis database left for xdist worker {worker}")
    return usable[index]


REDIS_URL = f"redis://127.0.0.1:6379/{redis_test_db()}"
# The test process using the database: a test refuses one another live run holds.
OWNER_KEY = "tablo-tests:owner"
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def _held_by_another_run(client: redis.Redis) -> str | None:
    owner = client.get(OWNER_KEY)
    if owner is None or owner.decode() == OWNER:
        return None
    host, _, pid = owner.decode().rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
        return None  # a run that ended without cleaning up
    return owner.decode()


def flush_own_database(client: redis.Redis, *, hold: bool) -> None:
    """Empty this process's Redis database (``hold``: and mark it this run's)."""
    other = _held_by_another_run(client)
    if other is not None:
        raise RuntimeError(
            f"Redis database {REDIS_URL} is in use by another test run ({other}): "
            "choose another with TABLO_TEST_REDIS_DB"
        )
    client.flushdb()
    if hold:
        client.set(OWNER_KEY, OWNER)


BROKERS = {
    "database": "jobs.engine.broker.DatabaseBroker",
    "redis": "jobs.engine.redis_broker.RedisBroker",
}


@dataclass
class QueueBroker:
    """The broker a test runs on, seen from outside the broker's own code."""

    kind: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def _key(self, name: str) -> str:
        from jobs.engine.redis_broker import prefix

        return prefix() + name

    def held(self, node_id: int) -> dict[int, int]:
        """Task key -> attempt of what the node holds."""
        if self.kind == "redis":
            return {
                int(k): int(v) for k, v in self.redis.hgetall(self._key(f"n:{node_id}")).items()
            }
        return dict(
            Job.objects.filter(owner=node_id, state=Job.State.RUNNING).values_list("id", "attempt")
        )

    def task_ids(self, keys: Any) -> list[str]:
        """The django-q2 task ids of these task keys."""
        if self.kind == "redis":
            return [t for t in (self.redis.hget(self._key(f"t:{k}"), "task_id") for k in keys) if t]
        return list(Job.objects.filter(id__in=list(keys)).values_list("task_id", flat=True))

    def attempts(self, keys: Any) -> dict[int, int]:
        """Task key -> current attempt, for the keys still queued or running."""
        if self.kind == "redis":
            found = {k: self.redis.hget(self._key(f"t:{k}"), "attempt") for k in keys}
            return {k: int(v) for k, v in found.items() if v is not None}
        return dict(Job.objects.filter(id__in=list(keys)).values_list("id", "attempt"))

    def started_again(self, held: dict[int, int]) -> bool:
        """Each held task finished (gone) or was claimed again as a later attempt."""
        now = self.attempts(held)
        return all(key not in now or now[key] > attempt for key, attempt in held.items())

    def ready_attempts(self) -> set[int]:
        """The attempt counters of the tasks ready to claim."""
        if self.kind == "redis":
            from jobs.engine.redis_broker import RedisBroker

            ready = self.redis.zrange(self._key(f"q:{RedisBroker().queue}:ready"), 0, -1)
            return set(self.attempts(int(k) for k in ready).values())
        return set(
            Job.objects.filter(state=Job.State.QUEUED, owner=None).values_list("attempt", flat=True)
        )

    def waiting(self) -> int:
        """Tasks queued or waiting for a retry, in every queue."""
        from jobs.engine import stats

        figures = stats.depth().values()
        return sum(q[Job.State.QUEUED] + q[Job.State.RETRYING] for q in figures)


@pytest.fixture(params=sorted(BROKERS))
def queue_broker(request: pytest.FixtureRequest) -> Iterator[QueueBroker]:
    kind = request.param
    with ExitStack() as stack:
        if kind == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            flush_own_database(client, hold=True)
            stack.callback(flush_own_database, client, hold=False)
            stack.enter_context(conf(BROKER_CLASS=BROKERS[kind], REDIS=REDIS_URL))
            yield QueueBroker(kind=kind, env={"QUEUE_REDIS_URL": REDIS_URL})
        else:
            stack.enter_context(conf(BROKER_CLASS=BROKERS[kind]))
            yield QueueBroker(kind=kind)
