"""pgqueuer: enqueue with its sync API (``SyncQueries`` on psycopg, as a Django view
would), 2 worker processes of its supervisor (``benchmarks/peers/pgqueuer_app.py``)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import psycopg
from pgqueuer.db import SyncPsycopgDriver
from pgqueuer.queries import Queries, SyncQueries

from benchmarks.peers.pgqueuer_app import READY
from benchmarks.peers.proc import WorkerSpec

BASE_DIR = Path(__file__).resolve().parents[2]
WORKERS = 2


class PgqueuerAdapter:
    processes = WORKERS

    def __init__(self) -> None:
        self.dsn = os.environ["BENCH17_DATABASE_URL"]
        self.connection = psycopg.connect(self.dsn, autocommit=True)
        self.queries = SyncQueries(SyncPsycopgDriver(self.connection))

    def versions(self) -> dict[str, str]:
        return {"pgqueuer": version("pgqueuer"), "asyncpg": version("asyncpg")}

    def setup(self) -> None:
        async def install() -> None:
            import asyncpg

            connection = await asyncpg.connect(self.dsn)
            try:
                queries = Queries.from_asyncpg_connection(connection)
                if not await queries.schema_is_installed():
                    await queries.install()
            finally:
                await connection.close()

        asyncio.run(install())

    def reset(self) -> None:
        self.connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")

    def enqueue_noop(self) -> None:
        self.queries.enqueue("done", None)

    def enqueue_stamp(self, enqueued_at: float) -> None:
        self.queries.enqueue("stamp", f"{enqueued_at:.6f}".encode())

    def fill(self, count: int) -> None:
        for start in range(0, count, 5000):  # pgqueuer's batch enqueue: one INSERT
            n = min(5000, count - start)
            self.queries.enqueue(["done"] * n, [None] * n, [0] * n)

    def remaining(self) -> int:
        row = self.connection.execute("SELECT count(*) FROM pgqueuer").fetchone()
        return int(row[0])

    def producer(self) -> tuple[Callable[[float], None], Callable[[], None]]:
        connection = psycopg.connect(self.dsn, autocommit=True)
        queries = SyncQueries(SyncPsycopgDriver(connection))

        def enqueue(t: float) -> None:
            queries.enqueue("stamp", f"{t:.6f}".encode())

        return enqueue, connection.close

    def worker_specs(self) -> list[WorkerSpec]:
        argv = [sys.executable, "-m", "benchmarks.peers.pgqueuer_app"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return [
            WorkerSpec(f"worker{i}", argv, env, BASE_DIR, ready_text=READY)
            for i in range(1, WORKERS + 1)
        ]

    def workers_ready(self) -> bool:
        return True


def make(name: str, workdir: Path) -> PgqueuerAdapter:
    return PgqueuerAdapter()
