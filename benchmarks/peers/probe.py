"""What every peer's benchmark task does, and how the runner reads it back.

The same two bodies run under every peer, so the count of finished tasks and the
start times come from one place no peer owns (Redis DB 14), not from each peer's
own bookkeeping:

- ``done()``: count one finished task. The drain's "no-op" task: it adds 1 to a
  per-process tally that a background thread adds to a Redis counter every 10 ms
  (INCRBY), so the drain measures the peer's queue, not a Redis client: one INCR
  per task costs more than some peers' whole task (redis.asyncio ~0.2 ms of CPU).
- ``stamp(enqueued_at)``: RPUSH "enqueued_at started_at" (epoch seconds, the
  machine's one clock). The pickup and offered-rate phases read these.

Sync bodies for django-q2 and Celery; async ones (``adone``, ``astamp``) for
pgqueuer and procrastinate, whose tasks are coroutines. Only ``redis`` is needed.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

DONE = "bench17:done"
DONE_BY = "bench17:done_by"  # pid -> tasks: which worker processes have run a task
STAMPS = "bench17:stamps"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"

FLUSH_SECONDS = 0.01

_sync_client = None
_async_clients: dict[int, object] = {}
_tally_lock = threading.Lock()
_tally = 0
_flusher_pid = 0


def redis_url() -> str:
    return os.environ.get("BENCH17_REDIS_URL", DEFAULT_REDIS_URL)


def client():
    """This process's Redis client (redis-py reconnects by itself after a fork)."""
    global _sync_client
    if _sync_client is None:
        import redis

        _sync_client = redis.Redis.from_url(redis_url())
    return _sync_client


def _async_client():
    import asyncio

    import redis.asyncio

    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _async_clients:
        # Tasks of one process run concurrently (pgqueuer dispatches a batch at once):
        # they wait for a connection rather than fail with "Too many connections".
        pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url(), max_connections=16)
        _async_clients[loop_id] = redis.asyncio.Redis(connection_pool=pool)
    return _async_clients[loop_id]


def stamp_line(enqueued_at: float, started_at: float) -> str:
    return f"{enqueued_at:.6f} {started_at:.6f}"


def _flush() -> None:
    global _tally
    with _tally_lock:
        n, _tally = _tally, 0
    if n:
        pipe = client().pipeline(transaction=False)
        pipe.incrby(DONE, n)
        pipe.hincrby(DONE_BY, str(os.getpid()), n)
        pipe.execute()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        _flush()


def _start_tally() -> None:
    """In each process that runs tasks: a fresh tally, its flusher, and a last flush at exit.

    A worker that exits mid-run (recycled: every 5,000 tasks in Tablo, 500 in stock
    django-q2) ends through multiprocessing's exit path (``os._exit`` after its
    finalizers), which skips ``atexit``: its finalizer does the last flush, so no
    task goes uncounted.
    """
    global _tally, _flusher_pid
    _flusher_pid = os.getpid()
    with _tally_lock:
        _tally = 0  # a forked child starts from nothing
    atexit.register(_flush)
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _flush, exitpriority=100)
    try:  # Celery's prefork children are billiard processes
        import billiard.util
    except ImportError:
        pass
    else:
        billiard.util.Finalize(None, _flush, exitpriority=100)
    threading.Thread(target=_flush_forever, name="bench17-tally", daemon=True).start()


def done() -> None:
    """Count this task; the count reaches Redis within FLUSH_SECONDS."""
    global _tally
    if _flusher_pid != os.getpid():  # first task of this process
        _start_tally()
    with _tally_lock:
        _tally += 1


def stamp(enqueued_at: float) -> None:
    started = time.time()
    client().rpush(STAMPS, stamp_line(float(enqueued_at), started))


async def adone() -> None:
    done()  # no I/O: the tally is flushed by a thread


async def astamp(enqueued_at: float) -> None:
    started = time.time()
    await _async_client().rpush(STAMPS, stamp_line(float(enqueued_at), started))


# --- the runner's side ------------------------------------------------------------------
def reset() -> None:
    client().delete(DONE, DONE_BY, STAMPS)


def done_count() -> int:
    return int(client().get(DONE) or 0)


def progress() -> tuple[int, int]:
    """(tasks counted, worker processes that have run at least one)."""
    pipe = client().pipeline(transaction=False)
    pipe.get(DONE)
    pipe.hlen(DONE_BY)
    count, processes = pipe.execute()
    return int(count or 0), int(processes)


def stamp_count() -> int:
    return int(client().llen(STAMPS))


def wait_stamp(timeout: int) -> tuple[float, float] | None:
    """Block (BLPOP) until a stamp task has run; take its (enqueued_at, started_at)."""
    got = client().blpop([STAMPS], timeout=timeout)
    if got is None:
        return None
    a, b = got[1].decode().split()
    return float(a), float(b)


def stamps(start: int = 0) -> list[tuple[float, float]]:
    """(enqueued_at, started_at) of every stamp task run, from index ``start``."""
    rows = client().lrange(STAMPS, start, -1)
    out = []
    for raw in rows:
        a, b = raw.decode().split()
        out.append((float(a), float(b)))
    return out
