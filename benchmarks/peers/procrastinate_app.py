"""The procrastinate app: ``PsycopgConnector`` on the bench17_procrastinate database,
the probe's async bodies as tasks. Worker: ``python -m procrastinate --app
benchmarks.peers.procrastinate_app.app worker`` (its defaults: concurrency 1,
LISTEN/NOTIFY, succeeded jobs kept)."""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from benchmarks.peers import probe

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH17_DATABASE_URL", "")))


@app.task(name="bench17.done")
async def done() -> None:
    await probe.adone()


@app.task(name="bench17.stamp")
async def stamp(enqueued_at: float) -> None:
    await probe.astamp(enqueued_at)
