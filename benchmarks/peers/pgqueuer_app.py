"""The pgqueuer worker: ``python -m benchmarks.peers.pgqueuer_app``.

What ``pgq run benchmarks.peers.pgqueuer_app:create_qm`` does: pgqueuer's supervisor
(``pgqueuer.run``: signal handling, ``QueueManager.run`` with its defaults, batch 10
and 30 s dequeue timeout) on uvloop, with the app built as its README does
(``PgQueuer.from_asyncpg_connection``). The CLI itself cannot start with the typer
its pins resolve to (0.29.2: ``--log-level`` reaches it as a str, AttributeError
'name'), so this calls the supervisor directly. The entrypoints are the probe's
async bodies.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvloop
from pgqueuer import PgQueuer, run
from pgqueuer.models import Job

from benchmarks.peers import probe

READY = "BENCH17 READY"


@asynccontextmanager
async def create_qm() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["BENCH17_DATABASE_URL"])
    qm = PgQueuer.from_asyncpg_connection(connection)

    @qm.entrypoint("done")
    async def done(job: Job) -> None:
        await probe.adone()

    @qm.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        assert job.payload is not None
        await probe.astamp(float(job.payload.decode()))

    print(READY, flush=True)
    try:
        yield qm
    finally:
        await connection.close()


if __name__ == "__main__":
    uvloop.run(run(create_qm))
