"""Celery with the Redis broker: ``delay()`` one at a time, one prefork worker ``-c 2``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from benchmarks.peers import probe
from benchmarks.peers.celery_app import READY, app, done, stamp
from benchmarks.peers.proc import WorkerSpec

BASE_DIR = Path(__file__).resolve().parents[2]
QUEUE = "celery"
# The default queue and the Redis transport's bookkeeping of delivered, unacknowledged
# messages: what a killed worker would hand back later.
KEYS = (QUEUE, "unacked", "unacked_index", "unacked_mutex")


class CeleryAdapter:
    processes = 2  # prefork children (--concurrency 2)

    def versions(self) -> dict[str, str]:
        return {"celery": version("celery"), "kombu": version("kombu"), "redis": version("redis")}

    def setup(self) -> None:
        probe.client().ping()

    def reset(self) -> None:
        probe.client().delete(*KEYS)

    def enqueue_noop(self) -> None:
        done.delay()

    def enqueue_stamp(self, enqueued_at: float) -> None:
        stamp.delay(enqueued_at)

    def fill(self, count: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                done.apply_async(producer=producer)

    def remaining(self) -> int:
        return int(probe.client().llen(QUEUE))

    def producer(self) -> tuple[Callable[[float], None], Callable[[], None]]:
        # One producer (and its connection) per thread: kombu's are not shared safely.
        connection = app.connection_for_write()
        producer = app.amqp.Producer(connection)

        def enqueue(t: float) -> None:
            stamp.apply_async((t,), producer=producer)

        return enqueue, connection.release

    def worker_specs(self) -> list[WorkerSpec]:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.peers.celery_app",
            "worker",
            "--concurrency",
            "2",
            "--hostname",
            "bench17@%h",
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return [WorkerSpec("worker", argv, env, BASE_DIR, ready_text=READY)]

    def workers_ready(self) -> bool:
        return True


def make(name: str, workdir: Path) -> CeleryAdapter:
    return CeleryAdapter()
