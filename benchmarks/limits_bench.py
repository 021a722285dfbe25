"""Flow-control benchmark: what a concurrency limit costs the claim, on real clusters.

In one run, on one PostgreSQL database, printed as ratios:

1. drain of N queued no-op tasks by one node of 2 workers, without a limit and with a
   limit that never binds (``concurrency=100000``), alternated ``--rounds`` times
   (medians): the cost of the limited claim itself (the target: at most 10%), as
   throughput and as CPU per task (the nodes' processes and their database backends:
   on a shared machine CPU time moves less with the neighbours' load than wall time);
2. a binding limit: two nodes of 2 workers each, tasks of 200 ms under ``concurrency=2``:
   throughput against the limit's ceiling (2 / 0.2 s = 10 tasks/s; the target: at the
   limit, not at half of it), and the most tasks seen running at once.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_limits_bench \\
        .venv/bin/python benchmarks/limits_bench.py [--tasks 2000] [--rounds 3]

The database is created if missing, migrated, and emptied between phases: never point
it at a database whose data you want to keep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))  # run as a script: the project's packages
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/tablo_limits_bench"

from benchmarks.peers.phases import SAMPLE_SECONDS  # noqa: E402 (after the path is set)
from benchmarks.peers.proc import BackendCpu  # noqa: E402


def prepare_database(url: str) -> None:
    parsed = urlparse(url)
    subprocess.run(
        ["createdb", "-h", parsed.hostname or "127.0.0.1", "-U", parsed.username or "postgres",
         "-p", str(parsed.port or 5432), parsed.path.lstrip("/")],
        capture_output=True,
        check=False,  # exists already: fine
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=dict(os.environ, DATABASE_URL=url),
        check=True,
    )


class Bench:
    def __init__(self, url: str, workdir: Path) -> None:
        import django

        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        from benchmarks import limits_jobs  # noqa: F401 (declares the jobs here too)

        self.workdir = workdir
        self.nodes: list = []
        self.database = urlparse(url).path.lstrip("/")

    def reset(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE django_q_task, jobs_job, jobs_jobattempt, jobs_ratestart")

    def start_nodes(self, count: int) -> None:
        from tests.support.cluster import Worker

        env = dict(os.environ, PYTHONUNBUFFERED="1", LOG_FORMAT="json", Q_WORKERS="2")
        self.nodes = [
            Worker(self.workdir / f"node-{len(self.nodes)}-{i}.log", env=env).start(
                wait_ready=False
            )
            for i in range(count)
        ]
        for node in self.nodes:
            node.wait_for_log("running.", timeout=60)

    def stop_nodes(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def own_backend(self) -> frozenset[int]:
        """This process's own backend: its polling is not the system's CPU."""
        from django.db import connection

        connection.ensure_connection()
        return frozenset({connection.connection.info.backend_pid})

    def node_cpu(self) -> float:
        """CPU seconds so far of the nodes (every process, reaped children included)."""
        from benchmarks.queue_bench import tree_cpu_seconds

        return sum(tree_cpu_seconds(node.pid) for node in self.nodes)

    def drain(
        self, name: str, n: int, *, sample_running: bool = False, backends: BackendCpu | None = None
    ) -> tuple[float, int]:
        """Seconds from enqueueing ``n`` tasks of ``name`` until none is left, and the most
        seen running at once (sampled every 5 ms when asked). ``backends``: sampled every
        ``SAMPLE_SECONDS`` (a backend that ends takes its CPU with it)."""
        from django.db import connection

        from jobs.engine import registry

        self.reset()
        most = 0
        start = sampled_at = time.perf_counter()
        registry.enqueue_many(name, [()] * n)
        with connection.cursor() as cursor:
            while True:
                # Running rows (started or claimed to start next: what the limit counts) of
                # this job only: a node's own heartbeat tasks run meanwhile.
                cursor.execute(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'running') FROM jobs_job "
                    "WHERE job_name = %s",
                    [name],
                )
                left, running = cursor.fetchone()
                most = max(most, running)
                if backends is not None and time.perf_counter() - sampled_at >= SAMPLE_SECONDS:
                    backends.sample()
                    sampled_at = time.perf_counter()
                if not left:
                    if backends is not None:
                        backends.sample()
                    return time.perf_counter() - start, most
                # Each poll counts the table: often enough for the drain's end, not so
                # often that it takes a share of the machine from the nodes.
                time.sleep(0.005 if sample_running else 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks per drain")
    parser.add_argument("--rounds", type=int, default=3, help="drains of each kind")
    parser.add_argument("--bound-tasks", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not url.startswith("postgres"):
        sys.exit("limits_bench needs PostgreSQL: set DATABASE_URL=postgres://...")
    prepare_database(url)
    with tempfile.TemporaryDirectory(prefix="limits-bench-") as tmp:
        bench = Bench(url, Path(tmp))
        from benchmarks.limits_jobs import BOUND_LIMIT, BOUND_SECONDS

        bench.start_nodes(1)
        try:
            bench.drain("bench.free", 200)  # warm-up: imports, connections, plans
            bench.drain("bench.loose", 200)
            free, loose, free_cpu, loose_cpu = [], [], [], []
            for _ in range(args.rounds):
                for name, rates, cpus in (
                    ("bench.free", free, free_cpu),
                    ("bench.loose", loose, loose_cpu),
                ):
                    backends = BackendCpu(bench.database, exclude=bench.own_backend())
                    nodes = bench.node_cpu()
                    backends.start()
                    rates.append(args.tasks / bench.drain(name, args.tasks, backends=backends)[0])
                    cpu = bench.node_cpu() - nodes + backends.seconds()
                    cpus.append(cpu / args.tasks * 1000)
        finally:
            bench.stop_nodes()
        bench.start_nodes(2)
        try:
            seconds, most = bench.drain("bench.bound", args.bound_tasks, sample_running=True)
        finally:
            bench.stop_nodes()
        bench.reset()

    ceiling = BOUND_LIMIT / BOUND_SECONDS
    bound_rate = args.bound_tasks / seconds
    free_rate, loose_rate = statistics.median(free), statistics.median(loose)
    free_ms, loose_ms = statistics.median(free_cpu), statistics.median(loose_cpu)
    print(f"drain without a limit, tasks/s (median of {args.rounds}):  {free_rate:8.0f}")
    print(f"drain with a limit that never binds, tasks/s:      {loose_rate:8.0f}")
    print(f"  throughput lost to the limited claim:            {1 - loose_rate / free_rate:8.1%}")
    print(f"CPU per task without a limit (nodes + PostgreSQL): {free_ms:8.3f} ms")
    print(f"CPU per task with a limit that never binds:        {loose_ms:8.3f} ms")
    print(f"  CPU added by the limited claim:                  {loose_ms / free_ms - 1:8.1%}")
    print(
        f"binding limit (concurrency={BOUND_LIMIT}, {BOUND_SECONDS * 1000:.0f} ms tasks, "
        f"4 workers): {bound_rate:.1f} tasks/s"
    )
    print(
        f"  of its ceiling of {ceiling:.0f} tasks/s:                  {bound_rate / ceiling:8.1%}"
    )
    print(f"  most rows running at once (sampled every 5 ms):  {most:8d}")
    print(f"  rounds, tasks/s: free {[round(r) for r in free]}, loose {[round(r) for r in loose]}")
    print(
        f"  rounds, CPU ms/task: free {[round(c, 3) for c in free_cpu]}, "
        f"loose {[round(c, 3) for c in loose_cpu]}"
    )


if __name__ == "__main__":
    main()
