"""The Celery app: Redis broker (DB 14), no result backend (Celery's default), the
probe's sync bodies as tasks. Worker: ``celery -A benchmarks.peers.celery_app worker -c 2``
(prefork, Celery's defaults otherwise)."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from benchmarks.peers import probe

READY = "BENCH17 READY"

app = Celery("bench17", broker=probe.redis_url())


@app.task(name="bench17.done")
def done() -> None:
    probe.done()


@app.task(name="bench17.stamp")
def stamp(enqueued_at: float) -> None:
    probe.stamp(enqueued_at)


@worker_ready.connect
def _ready(**_: object) -> None:
    # Celery logs its own "ready." at INFO; its default log level is WARNING.
    print(READY, flush=True)
