"""benchmarks/peers/probe.py: the task bodies every peer runs, against a stand-in Redis."""

from __future__ import annotations

import asyncio
import os

import pytest

from benchmarks.peers import probe


class FakeRedis:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.hashes: dict[str, dict[str, int]] = {}
        self.lists: dict[str, list[bytes]] = {}

    def rpush(self, key: str, value: str) -> None:
        self.lists.setdefault(key, []).append(value.encode())

    def pipeline(self, transaction: bool = True) -> FakeRedis:
        return self

    def incrby(self, key: str, n: int) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def hincrby(self, key: str, field: str, n: int) -> None:
        h = self.hashes.setdefault(key, {})
        h[field] = h.get(field, 0) + n

    def execute(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRedis:
    redis = FakeRedis()
    monkeypatch.setattr(probe, "client", lambda: redis)
    monkeypatch.setattr(probe, "_async_client", lambda: AsyncFake(redis))
    monkeypatch.setattr(probe, "_flusher_pid", os.getpid())  # no flusher thread in tests
    monkeypatch.setattr(probe, "_tally", 0)
    return redis


class AsyncFake:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis

    async def rpush(self, key: str, value: str) -> None:
        self.redis.rpush(key, value)


def test_every_peer_finds_its_task_bodies():
    # django-q2 and Celery resolve these by name; a missing one fails every task.
    for name in ("done", "stamp", "adone", "astamp"):
        assert callable(getattr(probe, name))


def test_done_tallies_and_a_flush_adds_the_tally_to_the_counters(fake: FakeRedis):
    for _ in range(3):
        probe.done()
    asyncio.run(probe.adone())
    assert fake.counters == {}  # nothing sent per task
    probe._flush()
    assert fake.counters == {probe.DONE: 4}
    assert fake.hashes == {probe.DONE_BY: {str(os.getpid()): 4}}
    probe._flush()  # nothing pending: nothing sent
    assert fake.counters == {probe.DONE: 4}


def test_stamp_records_enqueue_and_start_times(fake: FakeRedis):
    probe.stamp(100.5)
    asyncio.run(probe.astamp(200.25))
    lines = [raw.decode().split() for raw in fake.lists[probe.STAMPS]]
    assert [float(a) for a, _ in lines] == [100.5, 200.25]
    assert all(float(b) > 1e9 for _, b in lines)  # an epoch time: the shared clock


def test_stamp_line_round_trips():
    assert probe.stamp_line(1.5, 2.25) == "1.500000 2.250000"
