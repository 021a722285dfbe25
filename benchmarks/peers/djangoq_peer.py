"""Tablo and stock django-q2: queue_bench's two modes, as peers of the peer benchmark.

Runs in the project's virtualenv with ``DJANGO_SETTINGS_MODULE=benchmarks.queue_settings``
and ``QUEUE_BENCH_MODE`` = ``tablo`` (config.settings unchanged: this project's
engine and defaults) or ``stock`` (ORM broker, django-q2's defaults). The queue
filling, emptying and the view-like ``async_task()`` timing are queue_bench's
``Bench``. The worker is one cluster with 2 workers, queue_bench's
``qcluster_argv(mode)``: for ``tablo`` ``manage.py qcluster`` (this project's
supervisor and worker processes, claiming ``jobs.Job`` rows), for ``stock``
django-q2's own qcluster command (benchmarks/stock_qcluster.py: Sentinel, pusher,
monitor and workers on ``OrmQ``), as ``manage.py qcluster`` never reads ``OrmQ``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.peers.proc import WorkerSpec

BASE_DIR = Path(__file__).resolve().parents[2]
DONE = "benchmarks.peers.probe.done"
STAMP = "benchmarks.peers.probe.stamp"


class DjangoQAdapter:
    processes = 2  # Q_CLUSTER["workers"] of both modes, checked in versions()

    def __init__(self, mode: str, workdir: Path) -> None:
        from benchmarks.queue_bench import Bench

        if os.environ.get("QUEUE_BENCH_MODE") != mode:
            raise RuntimeError(f"QUEUE_BENCH_MODE must be {mode!r} for this peer")
        self.mode = mode
        self.bench = Bench(mode=mode, workdir=workdir)  # django.setup()

    def versions(self) -> dict[str, str]:
        from django.conf import settings

        cluster = settings.Q_CLUSTER
        if cluster["workers"] != self.processes:
            raise RuntimeError(f"Q_CLUSTER workers is {cluster['workers']}, not {self.processes}")
        return {
            "django-q2": version("django-q2"),
            "Django": version("Django"),
            "broker": cluster.get("broker_class", "django-q2 ORM broker"),
            "workers": str(cluster["workers"]),
            "save_limit": str(cluster.get("save_limit", "250 (default)")),
        }

    def setup(self) -> None:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)

    def reset(self) -> None:
        self.bench.reset()

    def enqueue_cost(self, samples: int) -> dict[str, Any]:
        """queue_bench's: async_task() between request_started/finished, as in a view."""
        figures = self.bench.enqueue_cost(samples)
        self.bench.reset()
        return {
            "enqueue_p50_ms": figures["async_task_p50_ms"],
            "enqueue_p99_ms": figures["async_task_p99_ms"],
            "enqueue_in_txn_p50_ms": figures["async_task_in_txn_p50_ms"],
            "insert_commit_floor_p50_ms": figures["insert_commit_floor_p50_ms"],
        }

    def enqueue_noop(self) -> None:
        from django_q.tasks import async_task

        async_task(DONE)

    def enqueue_stamp(self, enqueued_at: float) -> None:
        from django.db import connection
        from django_q.tasks import async_task

        async_task(STAMP, enqueued_at)
        connection.close_if_unusable_or_obsolete()  # the end of the request, as in a view

    def fill(self, count: int) -> None:
        self.bench.fill(count, func=DONE)

    def remaining(self) -> int:
        return self.bench.remaining()

    def producer(self) -> tuple[Callable[[float], None], Callable[[], None]]:
        from django.db import connection
        from django_q.tasks import async_task

        return (lambda t: async_task(STAMP, t)), connection.close

    def worker_specs(self) -> list[WorkerSpec]:
        from benchmarks.queue_bench import qcluster_argv
        from benchmarks.stock_qcluster import READY_TEXT

        env = dict(os.environ, PYTHONUNBUFFERED="1", LOG_FORMAT="json")
        return [
            WorkerSpec(
                name="qcluster",
                argv=qcluster_argv(self.mode),
                env=env,
                cwd=BASE_DIR,
                # Ours: the supervisor's "Q Cluster <name> running."; stock:
                # stock_qcluster.py's "stock django-q2: Q Cluster <name> running.".
                ready_text=READY_TEXT,
            )
        ]

    def workers_ready(self) -> bool:
        return True


def make(name: str, workdir: Path) -> DjangoQAdapter:
    return DjangoQAdapter(name, workdir)
