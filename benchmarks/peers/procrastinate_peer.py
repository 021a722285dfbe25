"""procrastinate: sync ``defer()`` one at a time (its sync connector, as a Django view
would), 2 worker processes of its own CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import psycopg

from benchmarks.peers.proc import WorkerSpec
from benchmarks.peers.procrastinate_app import app, done, stamp

BASE_DIR = Path(__file__).resolve().parents[2]
WORKERS = 2


class ProcrastinateAdapter:
    processes = WORKERS

    def __init__(self) -> None:
        self.dsn = os.environ["BENCH17_DATABASE_URL"]
        self.sql = psycopg.connect(self.dsn, autocommit=True)
        self.opened = False

    def _open(self) -> None:
        if not self.opened:
            app.open()  # not opened async: procrastinate uses a SyncPsycopgConnector
            self.opened = True

    def versions(self) -> dict[str, str]:
        return {"procrastinate": version("procrastinate"), "psycopg": version("psycopg")}

    def setup(self) -> None:
        exists = self.sql.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0]
        if exists is None:
            self._open()
            app.schema_manager.apply_schema()

    def reset(self) -> None:
        self.sql.execute(
            "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers,"
            " procrastinate_workers CASCADE"
        )

    def enqueue_noop(self) -> None:
        self._open()
        done.defer()

    def enqueue_stamp(self, enqueued_at: float) -> None:
        self._open()
        stamp.defer(enqueued_at=enqueued_at)

    def fill(self, count: int) -> None:
        self._open()
        for start in range(0, count, 5000):  # one INSERT per batch
            done.batch_defer(*({} for _ in range(min(5000, count - start))))

    def remaining(self) -> int:
        row = self.sql.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        ).fetchone()
        return int(row[0])

    def producer(self) -> tuple[Callable[[float], None], Callable[[], None]]:
        self._open()  # the sync connector's pool is shared by the threads

        def enqueue(t: float) -> None:
            stamp.defer(enqueued_at=t)

        return enqueue, lambda: None

    def worker_specs(self) -> list[WorkerSpec]:
        argv = [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "benchmarks.peers.procrastinate_app.app",
            "worker",
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return [WorkerSpec(f"worker{i}", argv, env, BASE_DIR) for i in range(1, WORKERS + 1)]

    def workers_ready(self) -> bool:
        # Each worker registers itself (procrastinate_workers) once it is running.
        row = self.sql.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
        return int(row[0]) >= WORKERS


def make(name: str, workdir: Path) -> ProcrastinateAdapter:
    return ProcrastinateAdapter()
