"""Django's Tasks on Tablo's engine: ``@task(...).enqueue()`` against ``async_task()`` on the
same engine, and against django-tasks-db's own ``db_worker``, in one run, as ratios.

The APIs, on one database:

* ``async_task``: django-q2's API on Tablo's engine (``manage.py qcluster``, Q_WORKERS=2);
* ``task``: Django's ``@task`` with ``TASKS`` on ``jobs.django_tasks.TabloBackend``, the
  same qcluster;
* ``django-tasks-db`` (``--peer``): Django's ``@task`` on django-tasks-db 0.13's
  ``DatabaseBackend``, run by two ``manage.py db_worker`` processes (its own worker,
  polling every ``--peer-interval`` seconds, its default 1 s), with
  benchmarks/requirements-django-tasks-db.txt installed.

The APIs are measured in one process, in turns (sample by sample, drain round by drain
round), so that the machine's load weighs on each alike; with ``--peer`` the settings are
benchmarks/django_tasks_db_settings.py (both Tasks backends, Tablo's under the alias
``tablo``).

Phases: the cost of one enqueue as a view makes it (autocommit, p50/p99); idle pickup
latency (enqueue -> start); drain (N tasks enqueued through the API in transactions of
500, then the workers start: tasks/s from a tenth done to the last; the median of
``--rounds``), with the enqueue rate of that fill.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_djtasks_bench \\
        .venv/bin/python benchmarks/django_tasks_bench.py --peer      # full
    .venv/bin/python benchmarks/django_tasks_bench.py --quick --peer  # a few minutes

The database is created if missing, migrated, and emptied between phases: never point
it at a database whose data you want to keep. Needs Django 6.0+.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
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
SETTINGS = "config.settings"
PEER_SETTINGS = "benchmarks.django_tasks_db_settings"
LOWER_IS_BETTER = {"enqueue_p50_ms", "enqueue_p99_ms", "pickup_p50_ms", "pickup_p99_ms"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- one settings module, in its own process ------------------------------------------
class Bench:
    """The APIs that share one settings module (``async_task`` and ``task``; or the peer),
    measured in turns: each sample, pickup and drain round alternates between them, so a
    change in the machine's load weighs on both alike."""

    def __init__(self, *, apis: list[str], workdir: Path, peer_interval: float) -> None:
        import django

        django.setup()
        self.apis = apis
        # Tablo's backend alias: "default", or "tablo" beside the peer's (its settings).
        self.tablo = "tablo" if PEER in apis else "default"
        self.workdir = workdir
        self.peer_interval = peer_interval

    def turns(self, i: int) -> list[str]:
        return self.apis if i % 2 == 0 else self.apis[::-1]

    def enqueue(self, api: str, name: str, *args: Any) -> None:
        """One task of benchmarks.queue_tasks (async_task) or benchmarks.django_tasks_funcs."""
        if api == "async_task":
            from django_q.tasks import async_task

            from benchmarks import queue_tasks

            async_task(getattr(queue_tasks, name), *args)
            return
        from benchmarks import django_tasks_funcs

        task = getattr(django_tasks_funcs, name)
        task.using(backend=self.tablo if api == "task" else "default").enqueue(*args)

    def tables(self) -> list[str]:
        from django_q.models import Task

        from jobs.models import Job, JobAttempt

        tables = [Job._meta.db_table, JobAttempt._meta.db_table, Task._meta.db_table]
        if PEER in self.apis:
            from django_tasks_db.models import DBTaskResult

            tables.append(DBTaskResult._meta.db_table)
        return tables

    def reset(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(self.tables())} RESTART IDENTITY")

    def remaining(self, api: str) -> int:
        if api == PEER:
            from django_tasks_db.models import DBTaskResult

            return DBTaskResult.objects.filter(status__in=["READY", "RUNNING"]).count()
        from jobs.models import Job

        return Job.objects.count()

    def start_workers(self, name: str, api: str) -> list[subprocess.Popen[bytes]]:
        """The API's workers: one qcluster (2 worker processes), or 2 db_workers."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", LOG_FORMAT="json", LOG_LEVEL="WARNING")
        env["DJANGO_SETTINGS_MODULE"] = PEER_SETTINGS if PEER in self.apis else SETTINGS
        if api == PEER:
            worker = [sys.executable, "manage.py", "db_worker", "--no-startup-delay"]
            argvs = [[*worker, "--no-reload", "--interval", str(self.peer_interval)]] * 2
        else:
            argvs = [[sys.executable, "manage.py", "qcluster"]]
        started = []
        for i, argv in enumerate(argvs):
            log = (self.workdir / f"{api}-{name}-{i}.log").open("ab")
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
    def enqueue_cost(self, samples: int) -> dict[str, dict[str, float]]:
        from django.core.signals import request_finished, request_started

        self.reset()
        times: dict[str, list[float]] = {api: [] for api in self.apis}
        for i in range(samples + 20):
            for api in self.turns(i):
                request_started.send(sender=None)
                start = time.perf_counter()
                self.enqueue(api, "noop")
                elapsed = time.perf_counter() - start
                request_finished.send(sender=None)
                if i >= 20:  # warm-up: imports, the first connection, statement caches
                    times[api].append(elapsed)
        return {
            api: {"enqueue_p50_ms": ms(pct(t, 50)), "enqueue_p99_ms": ms(pct(t, 99))}
            for api, t in times.items()
        }

    # 2. idle pickup latency ------------------------------------------------------------
    def pickup(self, samples: int) -> dict[str, dict[str, float]]:
        from django.db import connection

        self.reset()
        outs = {api: self.workdir / f"{api}-pickup.txt" for api in self.apis}
        for out in outs.values():
            out.unlink(missing_ok=True)
        # One qcluster serves both of Tablo's APIs; the peer has its own workers.
        kinds = {"qcluster" if api != PEER else PEER: api for api in self.apis}
        workers = [w for api in kinds.values() for w in self.start_workers("pickup", api)]
        latencies: dict[str, list[float]] = {api: [] for api in self.apis}
        try:
            # Ready when a first task of each API ran (the workers log readiness their way).
            for api in self.apis:
                self.enqueue(api, "stamp", time.time(), str(outs[api]))
                self.wait_lines(outs[api], 1, timeout=60)
            for i in range(1, samples + 1):
                for api in self.turns(i):
                    time.sleep(random.uniform(0.02, 0.06))  # idle, out of phase with polls
                    self.enqueue(api, "stamp", time.time(), str(outs[api]))
                    connection.close_if_unusable_or_obsolete()
                    lines = self.wait_lines(outs[api], i + 1, timeout=30)
                    a, b = (float(x) for x in lines[i].split())
                    latencies[api].append(b - a)
        finally:
            self.stop(workers)
        return {
            api: {"pickup_p50_ms": ms(pct(t, 50)), "pickup_p99_ms": ms(pct(t, 99))}
            for api, t in latencies.items()
        }

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
    def drain(self, count: int, rounds: int) -> dict[str, dict[str, float]]:
        """Medians over ``rounds`` rounds per API, the APIs in turns."""
        fill: dict[str, list[float]] = {api: [] for api in self.apis}
        rate: dict[str, list[float]] = {api: [] for api in self.apis}
        for i in range(rounds):
            for api in self.turns(i):
                filled, drained = self.drain_once(api, count)
                fill[api].append(filled)
                rate[api].append(drained)
        return {
            api: {
                "enqueue_in_txn_per_s": round(statistics.median(fill[api]), 1),
                "drain_tasks_per_s": round(statistics.median(rate[api]), 1),
            }
            for api in self.apis
        }

    def drain_once(self, api: str, count: int) -> tuple[float, float]:
        from django.db import transaction

        self.reset()
        start = time.perf_counter()
        for offset in range(0, count, 500):
            with transaction.atomic():
                for _ in range(min(500, count - offset)):
                    self.enqueue(api, "noop")
        filled = count / (time.perf_counter() - start)
        workers = self.start_workers("drain", api)
        samples: list[tuple[float, int]] = []
        try:
            deadline = time.monotonic() + max(300, count / 5)
            while time.monotonic() < deadline:
                left = self.remaining(api)
                samples.append((time.monotonic(), left))
                if left == 0:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"drain not finished: {samples[-1][1]} left")
        finally:
            self.stop(workers)
        # Steady state: from a tenth done to the empty queue (each worker process imports
        # the task's module, and what it needs, on its first task).
        t0, left0 = next((t, left) for t, left in samples if left <= count * 0.9)
        return filled, left0 / (samples[-1][0] - t0)


def run_child(args: argparse.Namespace) -> None:
    apis = args.apis.split(",")
    bench = Bench(apis=apis, workdir=Path(args.workdir), peer_interval=args.peer_interval)
    results: dict[str, dict[str, Any]] = {api: {} for api in apis}
    for phase in (
        bench.enqueue_cost(args.enqueue_samples),
        bench.pickup(args.pickup_samples),
        bench.drain(args.drain, args.rounds),
    ):
        for api, figures in phase.items():
            results[api].update(figures)
    bench.reset()
    print("RESULT " + json.dumps(results), flush=True)


# --- the parent: the child's figures, one table ---------------------------------------
def prepare_database(url: str, settings: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
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
    metrics = list(results[modes[0]])
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
    parser.add_argument("--apis", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small numbers, a few minutes")
    parser.add_argument("--peer", action="store_true", help="also run django-tasks-db's db_worker")
    parser.add_argument("--peer-interval", type=float, default=1.0,
                        help="db_worker's --interval (its default: 1 s)")  # fmt: skip
    parser.add_argument("--enqueue-samples", type=int, default=1000)
    parser.add_argument("--pickup-samples", type=int, default=100)
    parser.add_argument("--drain", type=int, default=5000, help="tasks per drain round")
    parser.add_argument("--rounds", type=int, default=3, help="drain rounds per API")
    args = parser.parse_args()
    if args.quick:
        args.enqueue_samples, args.pickup_samples, args.drain, args.rounds = 200, 20, 1000, 2
    if args.apis:
        run_child(args)
        return

    url = os.environ.get("DATABASE_URL") or DEFAULT_DB
    if not url.startswith("postgres"):
        sys.exit("the benchmark runs on PostgreSQL: set DATABASE_URL=postgres://...")
    apis = ["async_task", "task"] + ([PEER] if args.peer else [])
    settings = PEER_SETTINGS if args.peer else SETTINGS
    prepare_database(url, settings)
    with tempfile.TemporaryDirectory(prefix="djtasks-bench-") as workdir:
        env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE=settings)
        env["LOG_LEVEL"] = "WARNING"
        argv = [sys.executable, __file__, "--apis", ",".join(apis), "--workdir", workdir]
        for option in ("peer_interval", "enqueue_samples", "pickup_samples", "drain", "rounds"):
            argv += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
        done = subprocess.run(argv, cwd=BASE_DIR, env=env, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            sys.exit(f"the benchmark failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        results: dict[str, dict[str, Any]] = json.loads(lines[-1][len("RESULT ") :])
    report(results)


if __name__ == "__main__":
    main()
