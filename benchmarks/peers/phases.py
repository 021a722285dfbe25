"""The workload, the same for every peer: each phase drives a peer through its adapter.

An adapter (one module per peer in this package) knows how to enqueue one task as
a web view would, fill the queue fast, empty it, and start the worker processes;
the phases here do the timing, so no peer measures itself differently. Task
bodies and the completion counter are ``benchmarks.peers.probe``.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from benchmarks.peers import probe, proc
from benchmarks.peers.report import ms, pct

WARMUP = 20  # first enqueues: imports, first connection, statement caches
PICKUP_WARMUP = 5
SETTLE_SECONDS = 1.0  # after "up": a LISTEN or first poll set up just after it
GRACE_SECONDS = 15.0
PICKUP_TIMEOUT = 4  # below redis-py's 5 s socket timeout, which would cut BLPOP short
STALL_SECONDS = 30.0  # a drain whose counter stands still this long has lost tasks
# How often a drain reads its database backends' CPU (a recycled worker's backend ends).
SAMPLE_SECONDS = 0.25


class Adapter(Protocol):
    processes: int  # processes that run tasks (qcluster's and Celery's 2 workers)

    def versions(self) -> dict[str, str]: ...
    def setup(self) -> None: ...
    def reset(self) -> None: ...
    def enqueue_noop(self) -> None: ...
    def enqueue_stamp(self, enqueued_at: float) -> None: ...
    def fill(self, count: int) -> None: ...
    def remaining(self) -> int: ...
    def producer(self) -> tuple[Callable[[float], None], Callable[[], None]]: ...
    def worker_specs(self) -> list[proc.WorkerSpec]: ...
    def workers_ready(self) -> bool: ...


@dataclass
class Context:
    peer: str
    workdir: Path
    marker: str

    def workers(self, adapter: Adapter, label: str):
        return proc.running(
            adapter.worker_specs(),
            workdir=self.workdir,
            marker=self.marker,
            label=f"{self.peer}-{label}",
            ready=adapter.workers_ready,
        )


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


# 1. enqueue cost ---------------------------------------------------------------------------
def enqueue_cost(adapter: Adapter, samples: int) -> dict[str, Any]:
    """One task at a time from the producer, no worker running; p50/p99 of the call."""
    own = getattr(adapter, "enqueue_cost", None)
    if own is not None:  # django-q2: queue_bench's view-like measurement
        return own(samples)
    adapter.reset()
    times = []
    for i in range(samples + WARMUP):
        start = time.perf_counter()
        adapter.enqueue_noop()
        elapsed = time.perf_counter() - start
        if i >= WARMUP:
            times.append(elapsed)
    queued = adapter.remaining()
    if queued != samples + WARMUP:
        warn(f"{queued} tasks queued after the enqueue phase, expected {samples + WARMUP}")
    adapter.reset()
    return {"enqueue_p50_ms": ms(pct(times, 50)), "enqueue_p99_ms": ms(pct(times, 99))}


# 2. idle pickup -------------------------------------------------------------------------------
def pickup(adapter: Adapter, samples: int, ctx: Context) -> dict[str, Any]:
    """Enqueue -> task start with the queue empty each time, workers idle."""
    adapter.reset()
    probe.reset()
    latencies = []
    with ctx.workers(adapter, "pickup"):
        time.sleep(SETTLE_SECONDS)
        for i in range(samples + PICKUP_WARMUP):
            time.sleep(random.uniform(0.02, 0.06))  # idle, and out of phase with any poll
            enqueued = time.time()
            adapter.enqueue_stamp(enqueued)
            got = probe.wait_stamp(PICKUP_TIMEOUT)  # blocks: no polling
            if got is None:
                raise RuntimeError(f"pickup task {i} did not start within {PICKUP_TIMEOUT} s")
            a, b = got
            if i >= PICKUP_WARMUP:
                latencies.append(b - a)
    adapter.reset()
    return {
        "pickup_p50_ms": ms(pct(latencies, 50)),
        "pickup_p99_ms": ms(pct(latencies, 99)),
    }


# 3. drain ---------------------------------------------------------------------------------------
def drain(adapter: Adapter, count: int, ctx: Context, *, label: str = "drain") -> dict[str, Any]:
    """``count`` counted no-op tasks queued first; tasks/s, worker CPU per task and the
    CPU of the peer's PostgreSQL backends per task (none for a peer without a database).

    Timed from the moment every worker process has run a task (each is up and fed:
    start-up is left out of both the rate and the CPU) to the counter reaching
    ``count``. Should a worker never get a task, from when all reported up.
    """
    adapter.reset()
    probe.reset()
    adapter.fill(count)
    queued = adapter.remaining()
    if queued != count:
        raise RuntimeError(f"fill queued {queued} tasks, expected {count}")
    deadline_s = max(120.0, count / 5)
    with ctx.workers(adapter, label) as workers:
        sessions = [w.pid for w in workers]

        def sample() -> tuple[float, int, float]:
            cpu = proc.cpu_seconds(sessions, ctx.marker)
            return time.monotonic(), probe.done_count(), cpu

        # The peer's PostgreSQL backends (none for a peer without a database), sampled
        # every SAMPLE_SECONDS and at the workers' own sample moments.
        database = urlparse(os.environ.get("BENCH17_DATABASE_URL", "")).path.lstrip("/")
        backends = proc.BackendCpu(database) if database else None
        sampled_at = 0.0

        start = sample()  # every worker is up (its own signal)
        if backends is not None:
            backends.start()
        all_busy: tuple[float, int, float] | None = None
        done, moved_at = start[1], start[0]
        while done < count:
            now = time.monotonic()
            if now > start[0] + deadline_s or now - moved_at > STALL_SECONDS:
                raise RuntimeError(
                    f"drain stopped at {done}/{count} tasks after {now - start[0]:.0f} s "
                    f"(no progress for {now - moved_at:.0f} s)"
                )
            time.sleep(0.005)
            latest, busy = probe.progress()
            if all_busy is None and busy >= adapter.processes:
                all_busy = sample()
                if backends is not None:
                    backends.start()
            if backends is not None and time.monotonic() - sampled_at >= SAMPLE_SECONDS:
                backends.sample()
                sampled_at = time.monotonic()
            if latest != done:
                done, moved_at = latest, time.monotonic()
        end = sample()
        if backends is not None:
            backends.sample()
        time.sleep(0.5)  # acknowledgements are batched by some peers
        left = adapter.remaining()
    if all_busy is None or all_busy[1] >= count:
        warn(f"{ctx.peer}: not every worker process ran a task; timed from start-up")
    t0, c0, cpu0 = all_busy if all_busy is not None and all_busy[1] < count else start
    t1, _, cpu1 = end
    timed = done - c0
    if timed < count / 2:
        warn(f"only {timed} of {count} tasks timed (the rest ran while workers started)")
    return {
        "tasks": count,
        "timed_tasks": timed,
        "done_before_timing": c0,
        "all_workers_busy": all_busy is not None,
        "seconds": round(t1 - t0, 3),
        "tasks_per_s": round(timed / (t1 - t0), 1) if t1 > t0 else None,
        "cpu_per_task_ms": round((cpu1 - cpu0) / timed * 1000, 3) if timed else None,
        "pg_cpu_per_task_ms": (
            round(backends.seconds() / timed * 1000, 3) if timed and backends is not None else None
        ),
        "ran": done,
        "still_queued": left,
    }


# 4. offered rate ---------------------------------------------------------------------------
def sustained(
    adapter: Adapter, *, rate: float, seconds: float, producers: int, ctx: Context
) -> dict[str, Any]:
    """``rate`` tasks/s offered for ``seconds`` by ``producers`` threads, on a timetable.

    A producer behind its timetable enqueues at once until it has caught up, so
    every scheduled task is offered; the achieved rate is reported beside.
    """
    adapter.reset()
    probe.reset()
    offered = [0] * producers
    failures: list[str] = []
    with ctx.workers(adapter, "sustained"):
        time.sleep(SETTLE_SECONDS)
        start_at = time.time() + 0.5

        def produce(index: int) -> None:
            enqueue, close = adapter.producer()
            interval = producers / rate
            next_at = start_at + index * interval / producers
            try:
                while next_at < start_at + seconds:
                    delay = next_at - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    enqueue(time.time())
                    offered[index] += 1
                    next_at += interval
            except Exception as exc:  # reported, and the other producers go on
                failures.append(repr(exc))
            finally:
                close()

        threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        produced_for = max(time.time() - start_at, seconds)
        total = sum(offered)
        grace_end = time.time() + GRACE_SECONDS
        while time.time() < grace_end and probe.stamp_count() < total:
            time.sleep(0.1)
    rows = probe.stamps()
    adapter.reset()
    if failures:
        raise RuntimeError(f"producer failed: {failures[0]}")
    # Completed rate: tasks started while the producers were offering, per second.
    in_window = sum(1 for _, started in rows if started <= start_at + produced_for)
    latencies = [b - a for a, b in rows] + [float("inf")] * (total - len(rows))
    return {
        "sustained_rate_asked_per_s": rate,
        "sustained_offered_per_s": round(total / produced_for, 1),
        "sustained_completed_per_s": round(in_window / produced_for, 1),
        "sustained_unfinished": total - len(rows),
        "sustained_p50_ms": ms(pct(latencies, 50)),
        "sustained_p99_ms": ms(pct(latencies, 99)),
    }
