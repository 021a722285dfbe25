"""Django's Tasks on Tablo's engine: ``@task(...).enqueue()`` against ``async_task()`` on the
same engine, and against django-tasks-db's own ``db_worker``, in one run, as ratios.

Modes, each in its own process (settings are read once per process), on one database:

* ``async_task``: django-q2's API on Tablo's engine (``manage.py qcluster``, Q_WORKERS=2);
* ``task``: Django's ``@task`` with ``TASKS`` on ``jobs.django_tasks.TabloBackend``, the
  same qcluster;
* ``django-tasks-db`` (``--peer``): Django's ``@task`` on django-tasks-db 0.13's
  ``DatabaseBackend``, run by two ``manage.py db_worker`` processes (its own worker,
  polling every ``--peer-interval`` seconds, its default 1 s), with
  benchmarks/requirements-django-tasks-db.txt installed.

Phases: the cost of one enqueue as a view makes it (autocommit, p50/p99); idle pickup
latency (enqueue -> start); drain (N tasks enqueued through the API in transactions of
500, then the workers start: tasks/s from the first one done to the last).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_djtasks_bench \\
        .venv/bin/python benchmarks/django_tasks_bench.py --peer      # full
    .venv/bin/python benchmarks/django_tasks_bench.py --quick --peer  # ~1 min

The database is created if missing, migrated, and emptied between phases: never point
it at a database whose data you want to keep. Needs Django 6.0+.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[1]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/tablo_djtasks_bench"
PEER = "django-tasks-db"
MODES = ("async_task", "task", PEER)
SETTINGS = {
    "async_task": "config.settings",
    "task": "config.settings",
    PEER: "benchmarks.django_tasks_db_settings",
}
LOWER_IS_BETTER = {"enqueue_p50_ms", "enqueue_p99_ms", "pickup_p50_ms", "pickup_p99_ms"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- one mode, in its own process ------------------------------------------------------
class Bench:
    def __init__(self, *, mode: str, workdir: Path, peer_interval: float) -> None:
        import django

        django.setup()
        self.mode = mode
        self.workdir = workdir
        self.peer_interval = peer_interval

    # The mode's API: enqueue one task of benchmarks.django_tasks_funcs / queue_tasks.
    def enqueue(self, name: str, *args: Any) -> None:
        if self.mode == "async_task":
            from django_q.tasks import async_task

            from benchmarks import queue_tasks

            async_task(getattr(queue_tasks, name), *args)
        else:
            from benchmarks import django_tasks_funcs

            getattr(django_tasks_funcs, name).enqueue(*args)

    def tables(self) -> list[str]:
        from django_q.models import Task

        from jobs.models import Job, JobAttempt

        tables = [Job._meta.db_table, JobAttempt._meta.db_table, Task._meta.db_table]
        if self.mode == PEER:
            from django_tasks_db.models import DBTaskResult

            tables.append(DBTaskResult._meta.db_table)
        return tables

    def reset(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(self.tables())} RESTART IDENTITY")

    def remaining(self) -> int:
        if self.mode == PEER:
            from django_tasks_db.models import DBTaskResult

            return DBTaskResult.objects.filter(status__in=["READY", "RUNNING"]).count()
        from jobs.models import Job

        return Job.objects.count()

    def start_workers(self, name: str) -> list[subprocess.Popen[bytes]]:
        """The mode's workers: one qcluster (2 worker processes), or 2 db_workers."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", LOG_FORMAT="json", LOG_LEVEL="WARNING")
        env["DJANGO_SETTINGS_MODULE"] = SETTINGS[self.mode]
        if self.mode == PEER:
            worker = [sys.executable, "manage.py", "db_worker", "--no-startup-delay"]
            argvs = [[*worker, "--no-reload", "--interval", str(self.peer_interval)]] * 2
        else:
            argvs = [[sys.executable, "manage.py", "qcluster"]]
        started = []
        for i, argv in enumerate(argvs):
            log = (self.workdir / f"{self.mode}-{name}-{i}.log").open("ab")
            started.append(
                subprocess.Popen(
                    argv,
                    cwd=BASE_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return started

    def stop(self, workers: list[subprocess.Popen[bytes]]) -> None:
        import psutil

        for worker in workers:
            tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(True)]
            for process in tree:
                process.kill()
            worker.wait()

    # 1. one enqueue, as a view makes it ---------------------------------------------------
    def enqueue_cost(self, samples: int) -> dict[str, float]:
        from django.core.signals import request_finished, request_started

        self.reset()
        times = []
        for i in range(samples + 20):
            request_started.send(sender=None)
            start = time.perf_counter()
            self.enqueue("noop")
            elapsed = time.perf_counter() - start
            request_finished.send(sender=None)
            if i >= 20:  # warm-up: imports, the first connection, statement caches
                times.append(elapsed)
        return {"enqueue_p50_ms": ms(pct(times, 50)), "enqueue_p99_ms": ms(pct(times, 99))}

    # 2. idle pickup latency ------------------------------------------------------------
    def pickup(self, samples: int) -> dict[str, float]:
        from django.db import connection

        self.reset()
        out = self.workdir / f"{self.mode}-pickup.txt"
        out.unlink(missing_ok=True)
        workers = self.start_workers("pickup")
        latencies = []
        try:
            # Ready when a first task runs (each worker logs readiness its own way).
            self.enqueue("stamp", time.time(), str(out))
            self.wait_lines(out, 1, timeout=60)
            for i in range(1, samples + 1):
                time.sleep(random.uniform(0.02, 0.06))  # idle, out of phase with polls
                self.enqueue("stamp", time.time(), str(out))
                connection.close_if_unusable_or_obsolete()
                lines = self.wait_lines(out, i + 1, timeout=30)
                a, b = (float(x) for x in lines[i].split())
                latencies.append(b - a)
        finally:
            self.stop(workers)
        return {"pickup_p50_ms": ms(pct(latencies, 50)), "pickup_p99_ms": ms(pct(latencies, 99))}

    @staticmethod
    def wait_lines(path: Path, count: int, *, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count:
                return lines
            time.sleep(0.0005)
        raise RuntimeError(f"{count} tasks did not run within {timeout} s")

    # 3. drain -------------------------------------------------------------------------
    def drain(self, count: int) -> dict[str, float]:
        from django.db import transaction

        self.reset()
        start = time.perf_counter()
        for offset in range(0, count, 500):
            with transaction.atomic():
                for _ in range(min(500, count - offset)):
                    self.enqueue("noop")
        filled = time.perf_counter() - start
        workers = self.start_workers("drain")
        samples: list[tuple[float, int]] = []
        try:
            deadline = time.monotonic() + max(300, count / 5)
            while time.monotonic() < deadline:
                left = self.remaining()
                samples.append((time.monotonic(), left))
                if left == 0:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"drain not finished: {samples[-1][1]} left")
        finally:
            self.stop(workers)
        first = max(0, next(i for i, (_, left) in enumerate(samples) if left < count) - 1)
        t0, left0 = samples[first]
        return {
            "enqueue_in_txn_per_s": round(count / filled, 1),
            "drain_tasks": count,
            "drain_tasks_per_s": round(left0 / (samples[-1][0] - t0), 1),
        }


def run_mode(args: argparse.Namespace) -> None:
    bench = Bench(mode=args.mode, workdir=Path(args.workdir), peer_interval=args.peer_interval)
    result: dict[str, Any] = {"mode": args.mode}
    result.update(bench.enqueue_cost(args.enqueue_samples))
    result.update(bench.pickup(args.pickup_samples))
    result.update(bench.drain(args.drain))
    bench.reset()
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: every mode, one table -------------------------------------------------
def prepare_database(url: str, modes: list[str]) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    for settings in sorted({SETTINGS[m] for m in modes}):
        env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE=settings)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=BASE_DIR, env=env, check=True
        )


def ratio(metric: str, ours: float, theirs: float) -> str:
    """How many times better ``ours`` is (over 1: better)."""
    if not ours or not theirs:
        return "-"
    value = theirs / ours if metric in LOWER_IS_BETTER else ours / theirs
    return f"{value:.2f}x"


def report(results: dict[str, dict[str, Any]]) -> None:
    modes = [m for m in MODES if m in results]
    metrics = [k for k in results[modes[0]] if k != "mode"]
    head = f"{'metric':<22}" + "".join(f"{m:>18}" for m in modes)
    comparisons = [("task", "async_task"), ("task", PEER)]
    comparisons = [(a, b) for a, b in comparisons if a in results and b in results]
    head += "".join(f"{a + ' vs ' + b:>28}" for a, b in comparisons)
    print(head)
    for metric in metrics:
        line = f"{metric:<22}" + "".join(f"{results[m].get(metric, '-')!s:>18}" for m in modes)
        for a, b in comparisons:
            line += f"{ratio(metric, results[a][metric], results[b][metric]):>28}"
        print(line)
    print("(ratios: how many times better the first is; over 1.00x is better)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small numbers, about a minute")
    parser.add_argument("--peer", action="store_true", help="also run django-tasks-db's db_worker")
    parser.add_argument("--peer-interval", type=float, default=1.0,
                        help="db_worker's --interval (its default: 1 s)")  # fmt: skip
    parser.add_argument("--enqueue-samples", type=int, default=1000)
    parser.add_argument("--pickup-samples", type=int, default=100)
    parser.add_argument("--drain", type=int, default=5000)
    args = parser.parse_args()
    if args.quick:
        args.enqueue_samples, args.pickup_samples, args.drain = 200, 20, 1000
    if args.mode:
        run_mode(args)
        return

    url = os.environ.get("DATABASE_URL") or DEFAULT_DB
    if not url.startswith("postgres"):
        sys.exit("the benchmark runs on PostgreSQL: set DATABASE_URL=postgres://...")
    modes = [m for m in MODES if args.peer or m != PEER]
    prepare_database(url, modes)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="djtasks-bench-") as workdir:
        for mode in modes:
            env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE=SETTINGS[mode])
            env["LOG_LEVEL"] = "WARNING"
            argv = [sys.executable, __file__, "--mode", mode, "--workdir", workdir]
            for option in ("peer_interval", "enqueue_samples", "pickup_samples", "drain"):
                argv += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
            done = subprocess.run(argv, cwd=BASE_DIR, env=env, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                sys.exit(f"mode {mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results[mode] = json.loads(lines[-1][len("RESULT ") :])
            print(f"{mode}: {results[mode]}", flush=True)
    report(results)


if __name__ == "__main__":
    main()
