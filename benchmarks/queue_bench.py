"""Queue benchmark: stock django-q2 (ORM broker, defaults) against this project's engine.

Runs both in the same run, on the same PostgreSQL database, each with its own real
cluster of 2 workers, and prints every figure and the ratio:

* ``tablo``, ``tablo-dropped``: ``manage.py qcluster``, this project's worker node
  (jobs.engine.supervisor: one supervisor process and its worker processes, which
  claim ``jobs.Job`` rows themselves);
* ``stock``: django-q2's own ``qcluster`` command (benchmarks/stock_qcluster.py: a
  Sentinel, a pusher, a monitor and the workers, on django-q2's ``OrmQ`` table),
  since ``manage.py qcluster`` never reads that table.

1. ``async_task()`` cost, as from a view (request_started/finished around it)
2. idle pickup latency: enqueue -> task start, the queue empty each time
3. drain: N no-op tasks already queued, 2 workers, tasks/s
4. sustained offered rate for T seconds: completion rate, p50/p99 enqueue -> run

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_bench \\
        .venv/bin/python benchmarks/queue_bench.py            # full
    .venv/bin/python benchmarks/queue_bench.py --quick        # small numbers, ~1 min

The database is created if missing, migrated, and emptied between phases: never
point it at a database whose data you want to keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/tablo_bench"
# tablo: the project's defaults (results kept); tablo-dropped: the same with
# save_limit -1 (no result rows), to show what keeping results costs.
MODES = ("stock", "tablo-dropped", "tablo")
DEFAULT_MODES = ",".join(MODES)


# --- helpers ---------------------------------------------------------------------------
def qcluster_argv(mode: str) -> list[str]:
    """The cluster of ``mode``: django-q2's own for stock, this project's otherwise.

    Both log a line with ``READY_TEXT`` once up: this project's supervisor "Q Cluster
    <name> running.", stock_qcluster.py "stock django-q2: Q Cluster <name> running.".
    """
    from benchmarks import stock_qcluster

    if mode == "stock":
        return list(stock_qcluster.ARGV)
    return [sys.executable, "manage.py", "qcluster"]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); inf counts as a task that never ran."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants, reaped children included."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def postgres_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL server process on this machine."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] == "postgres" and process.info["cpu_times"] is not None:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


# --- one mode, in its own process (settings are read once per process) -----------------
class Bench:
    def __init__(self, *, mode: str, workdir: Path) -> None:
        import django

        django.setup()
        self.mode = mode
        self.workdir = workdir

    def reset(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE django_q_ormq, django_q_task, jobs_job, jobs_jobattempt RESTART IDENTITY"
            )

    def remaining(self) -> int:
        from django_q.models import OrmQ

        from jobs.models import Job

        return OrmQ.objects.count() if self.mode == "stock" else Job.objects.count()

    def cluster(self, name: str) -> Any:
        """This mode's cluster (not started): ``qcluster_argv(mode)``, output to a log."""
        from benchmarks.stock_qcluster import READY_TEXT
        from tests.support.cluster import Worker

        argv = qcluster_argv(self.mode)

        class Cluster(Worker):  # type: ignore[misc]
            def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> Cluster:
                self._log = self.log_path.open("ab")
                self.process = subprocess.Popen(
                    argv,
                    cwd=BASE_DIR,
                    env=self.env,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                if wait_ready:
                    self.wait_for_log(READY_TEXT, timeout=timeout)
                return self

        env = dict(os.environ, PYTHONUNBUFFERED="1", LOG_FORMAT="json")
        return Cluster(self.workdir / f"{self.mode}-{name}.log", env=env)

    # 1. async_task() cost ----------------------------------------------------------------
    def enqueue_cost(self, samples: int) -> dict[str, float]:
        """async_task() as a view calls it, in autocommit and inside the view's transaction.

        The floor is a plain one-row INSERT and its commit on the same connection,
        measured in between: on a shared disk the commit's fsync dominates, and
        inside a transaction that commit is shared with the view's own writes.
        """
        from django.core.signals import request_finished, request_started
        from django.db import connection, transaction
        from django_q.tasks import async_task

        from benchmarks.queue_tasks import noop

        self.reset()
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial, v text)")
            cursor.execute("TRUNCATE bench_floor")

        def autocommit() -> float:
            start = time.perf_counter()
            async_task(noop)
            return time.perf_counter() - start

        def in_transaction() -> float:
            # The view's transaction: its commit is shared with the view's own
            # writes, so only the call itself is the cost of enqueueing.
            with transaction.atomic():
                floor()  # the view's own write, which opens the transaction
                start = time.perf_counter()
                async_task(noop)
                return time.perf_counter() - start

        def floor() -> float:
            start = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO bench_floor (v) VALUES ('x')")
            return time.perf_counter() - start

        runs: dict[str, list[float]] = {"autocommit": [], "in_txn": [], "floor": []}
        calls = {"autocommit": autocommit, "in_txn": in_transaction, "floor": floor}
        for i in range(samples + 20):
            for name, call in calls.items():
                request_started.send(sender=None)
                elapsed = call()
                request_finished.send(sender=None)
                if i >= 20:  # warm-up: imports, first connection, statement caches
                    runs[name].append(elapsed)
        queued, expected = self.remaining(), 2 * (samples + 20)
        if queued != expected:  # a sanity check, not a figure: say it, keep the timings
            print(f"warning: {queued} tasks queued, expected {expected}", file=sys.stderr)
        return {
            "async_task_p50_ms": ms(pct(runs["autocommit"], 50)),
            "async_task_p99_ms": ms(pct(runs["autocommit"], 99)),
            "async_task_in_txn_p50_ms": ms(pct(runs["in_txn"], 50)),
            "insert_commit_floor_p50_ms": ms(pct(runs["floor"], 50)),
        }

    # 2. idle pickup latency --------------------------------------------------------------
    def pickup(self, samples: int) -> dict[str, float]:
        from django.db import connection
        from django_q.tasks import async_task

        from benchmarks.queue_tasks import stamp

        self.reset()
        out = self.workdir / f"{self.mode}-pickup.txt"
        out.unlink(missing_ok=True)
        worker = self.cluster("pickup").start()
        latencies = []
        try:
            for i in range(samples + 5):
                time.sleep(random.uniform(0.02, 0.06))  # idle, and out of phase with polls
                enqueued = time.time()
                async_task(stamp, enqueued, str(out))
                connection.close_if_unusable_or_obsolete()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    lines = out.read_text().splitlines() if out.exists() else []
                    if len(lines) > i:
                        break
                    time.sleep(0.0005)
                else:
                    raise RuntimeError(f"task {i} did not run within 10 s")
                if i >= 5:
                    a, b = (float(x) for x in lines[i].split())
                    latencies.append(b - a)
        finally:
            worker.kill()  # the figures are taken; a graceful stop is not measured
        return {
            "pickup_p50_ms": ms(pct(latencies, 50)),
            "pickup_p99_ms": ms(pct(latencies, 99)),
        }

    # 3. drain ------------------------------------------------------------------------------
    def fill(self, count: int, func: str = "benchmarks.queue_tasks.noop") -> None:
        """Queue ``count`` tasks of ``func`` with bulk inserts (what async_task would store)."""
        from django.utils import timezone
        from django_q.conf import Conf
        from django_q.humanhash import uuid
        from django_q.models import OrmQ
        from django_q.signing import SignedPackage

        from jobs.engine.rows import job_row_from_task

        batch: list[Any] = []
        for _ in range(count):
            name, task_id = uuid()
            task = {
                "id": task_id,
                "name": name,
                "func": func,
                "args": (),
                "kwargs": {},
                "started": timezone.now(),
            }
            payload = SignedPackage.dumps(task)
            if self.mode == "stock":
                batch.append(OrmQ(key=Conf.CLUSTER_NAME, payload=payload, lock=timezone.now()))
            else:
                batch.append(job_row_from_task(task, queue=Conf.CLUSTER_NAME, payload=payload))
            if len(batch) >= 2000:
                type(batch[0]).objects.bulk_create(batch)
                batch = []
        if batch:
            type(batch[0]).objects.bulk_create(batch)

    def drain(self, count: int) -> dict[str, float]:
        self.reset()
        self.fill(count)
        worker = self.cluster("drain").start(wait_ready=False)
        samples: list[tuple[float, int]] = []
        cpu: list[tuple[float, float]] = []  # (cluster, postgres) CPU seconds, per sample
        try:
            deadline = time.monotonic() + max(300, count / 5)
            while time.monotonic() < deadline:
                left = self.remaining()
                samples.append((time.monotonic(), left))
                cpu.append((tree_cpu_seconds(worker.pid), postgres_cpu_seconds()))
                if left == 0:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"drain not finished: {samples[-1][1]} left")
        finally:
            worker.kill()  # the figures are taken; a graceful stop is not measured
        # From the first sample where work had started to the empty queue.
        started = max(0, next(i for i, (_, left) in enumerate(samples) if left < count) - 1)
        t0, left0 = samples[started]
        t1 = samples[-1][0]
        cluster_cpu = cpu[-1][0] - cpu[started][0]
        postgres_cpu = cpu[-1][1] - cpu[started][1]
        return {
            "drain_tasks": count,
            "drain_tasks_per_s": round(left0 / (t1 - t0), 1),
            # CPU of every process of the cluster (ours: supervisor and workers; stock:
            # sentinel, pusher, monitor and workers), and of the whole PostgreSQL
            # server, per task drained.
            "drain_cluster_cpu_ms_per_task": round(cluster_cpu / left0 * 1000, 3),
            "drain_postgres_cpu_ms_per_task": round(postgres_cpu / left0 * 1000, 3),
        }

    # 4. sustained offered rate -------------------------------------------------------------
    def sustained(self, *, rate: float, seconds: float, producers: int) -> dict[str, float]:
        from django.db import connection
        from django_q.tasks import async_task

        from benchmarks.queue_tasks import stamp

        self.reset()
        out = self.workdir / f"{self.mode}-sustained.txt"
        out.unlink(missing_ok=True)
        worker = self.cluster("sustained").start()
        offered = [0] * producers
        start_at = time.time() + 0.5

        def produce(index: int) -> None:
            interval = producers / rate
            next_at = start_at + index * interval / producers
            try:
                while next_at < start_at + seconds:
                    delay = next_at - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    async_task(stamp, time.time(), str(out))
                    offered[index] += 1
                    next_at += interval
            finally:
                connection.close()

        threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            produced_for = max(time.time() - start_at, seconds)
            total = sum(offered)
            grace_end = time.time() + 15
            while time.time() < grace_end:
                done = len(out.read_text().splitlines()) if out.exists() else 0
                if done >= total:
                    break
                time.sleep(0.1)
        finally:
            worker.kill()  # the figures are taken; a graceful stop is not measured
        rows = [tuple(map(float, line.split())) for line in out.read_text().splitlines()]
        # Completion rate: tasks run while the producers were offering, per second.
        in_window = sum(1 for _, started in rows if started <= start_at + produced_for)
        latencies = [b - a for a, b in rows] + [float("inf")] * (total - len(rows))
        p99 = pct(latencies, 99)
        return {
            "sustained_offered_per_s": round(total / produced_for, 1),
            "sustained_completed_per_s": round(in_window / produced_for, 1),
            "sustained_unfinished": total - len(rows),
            "sustained_p50_ms": ms(pct(latencies, 50)),
            "sustained_p99_ms": ms(p99) if p99 != float("inf") else "never (>15 s after end)",
        }


PHASES = ("enqueue", "pickup", "drain", "sustained")


def run_mode(args: argparse.Namespace) -> None:
    bench = Bench(mode=args.mode, workdir=Path(args.workdir))
    result: dict[str, Any] = {"mode": args.mode}
    phases = args.phases.split(",")
    if "enqueue" in phases:
        result.update(bench.enqueue_cost(args.enqueue_samples))
    if "pickup" in phases:
        result.update(bench.pickup(args.pickup_samples))
    if "drain" in phases:
        drain = args.stock_drain if args.mode == "stock" else args.drain
        result.update(bench.drain(drain))
    if "sustained" in phases:
        result.update(
            bench.sustained(rate=args.rate, seconds=args.seconds, producers=args.producers)
        )
    bench.reset()
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: both modes, one table --------------------------------------------------
LOWER_IS_BETTER = {
    "async_task_p50_ms",
    "async_task_p99_ms",
    "async_task_in_txn_p50_ms",
    "insert_commit_floor_p50_ms",
    "pickup_p50_ms",
    "pickup_p99_ms",
    "sustained_p50_ms",
    "sustained_p99_ms",
    "drain_cluster_cpu_ms_per_task",
    "drain_postgres_cpu_ms_per_task",
}


def mode_env(mode: str, database_url: str) -> dict[str, str]:
    """The environment that gives a process one mode's settings (peer_bench uses it too)."""
    return {
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "benchmarks.queue_settings",
        "QUEUE_BENCH_MODE": mode,
        "LOG_FORMAT": "json",
        # Production settings in every mode: DEBUG on wraps every cursor in
        # Django's query recorder, which a deployment does not pay.
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "benchmark-" + "k" * 50),
        "DJANGO_ALLOWED_HOSTS": "localhost",
    }


def run_child(
    args: argparse.Namespace, *, mode: str, url: str, workdir: Path, round_number: int
) -> dict[str, Any]:
    """One mode's phases in a process of its own (settings are read once per process)."""
    env = {**os.environ, **mode_env(mode, url)}
    command = [sys.executable, "benchmarks/queue_bench.py", "--mode", mode,
               "--workdir", str(workdir), "--phases", args.phases]  # fmt: skip
    for key in (
        "enqueue_samples",
        "pickup_samples",
        "drain",
        "stock_drain",
        "rate",
        "seconds",
        "producers",
    ):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    print(f"running {mode} (round {round_number + 1}) ...", flush=True)
    log_path = workdir / f"{mode}-{round_number}-bench.log"
    with log_path.open("wb") as log:
        proc = subprocess.run(
            command, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=log, check=False
        )
    lines = [x for x in proc.stdout.decode().splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{mode} failed (exit {proc.returncode}); see {log_path}")
    return json.loads(lines[-1][len("RESULT ") :])


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the rounds (others: the first round's)."""
    merged = dict(runs[0])
    for key in merged:
        values = [run.get(key) for run in runs]
        if all(isinstance(v, int | float) for v in values):
            merged[key] = statistics.median(values)
    return merged


def prepare_database(url: str) -> None:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    subprocess.run(
        [
            "createdb",
            "-h",
            parsed.hostname or "127.0.0.1",
            "-U",
            parsed.username or "postgres",
            "-p",
            str(parsed.port or 5432),
            name,
        ],
        capture_output=True,
        check=False,  # exists already: fine
    )
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="benchmarks.queue_settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers (about a minute)")
    parser.add_argument(
        "--modes", default=DEFAULT_MODES, help=f"comma-separated, of {', '.join(MODES)}"
    )
    parser.add_argument("--enqueue-samples", type=int)
    parser.add_argument("--pickup-samples", type=int)
    parser.add_argument("--drain", type=int, help="tasks drained by this project's engine")
    parser.add_argument(
        "--stock-drain",
        type=int,
        help="tasks drained by stock django-q2 (at ~16 tasks/s, 20,000 take over 20 minutes)",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="offered tasks/s")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated, of {','.join(PHASES)}"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every mode this many times, interleaved (stock, dropped, kept, stock, ...); "
        "each figure is then the median, with min and max printed",
    )
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "enqueue_samples": 200 if quick else 1000,
        "pickup_samples": 30 if quick else 200,
        "drain": 2000 if quick else 20000,
        "stock_drain": 300 if quick else 3000,
        "seconds": 10.0 if quick else 60.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    if args.mode:  # child process
        # A stopped benchmark must not leave its qcluster running: exit through the
        # finally blocks that kill it.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        run_mode(args)
        return

    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not url.startswith("postgres"):
        sys.exit("queue_bench needs PostgreSQL: set DATABASE_URL=postgres://...")
    prepare_database(url)
    workdir = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    print(f"logs in {workdir}", flush=True)
    rounds: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.rounds):
        for mode in args.modes.split(","):
            result = run_child(args, mode=mode, url=url, workdir=workdir, round_number=round_number)
            rounds.setdefault(mode, []).append(result)
            for key, value in result.items():
                print(f"  {mode:13} {key:28} {value}", flush=True)
    results = {mode: median_result(runs) for mode, runs in rounds.items()}
    if args.rounds > 1:
        print()
        for mode, runs in rounds.items():
            for key in runs[0]:
                values = [run[key] for run in runs if isinstance(run.get(key), int | float)]
                if key != "mode" and len(values) == len(runs):
                    print(f"  {mode:13} {key:28} min {min(values)} median "
                          f"{results[mode][key]} max {max(values)}")  # fmt: skip
    others = [mode for mode in results if mode != "tablo"]
    if "tablo" in results and others:
        print()
        header = f"{'figure':30}" + "".join(f" {mode:>13}" for mode in [*others, "tablo"])
        print(header + "".join(f" {'tablo/' + mode:>20}" for mode in others))
        for key, kept in results["tablo"].items():
            if key == "mode":
                continue
            row = f"{key:30}" + "".join(f" {results[m].get(key)!s:>13}" for m in others)
            row += f" {kept!s:>13}"
            row += "".join(f" {_ratio(key, results[m].get(key), kept):>20}" for m in others)
            print(row)
        print("(tablo: the project's defaults, results kept; tablo-dropped: save_limit -1;")
        print(" a ratio is how many times better tablo is than the other column)")


def _ratio(key: str, baseline: Any, value: Any) -> str:
    with contextlib.suppress(TypeError, ZeroDivisionError):
        better = baseline / value if key in LOWER_IS_BETTER else value / baseline
        return f"{better:.2f}x"
    return ""


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    main()
