"""Delivery contract: recovery after kill -9, and the drain rate, against a baseline tree.

Runs, in one run, on default settings (Q_TIMEOUT 300, bulk 25, 2 workers):

* drain of no-op tasks by this tree and by a baseline commit (``--baseline-ref``,
  checked out into a temporary git worktree), alternating rounds, each on its own
  scratch database;
* recovery: a node killed with ``kill -9`` while it holds tasks, then (a) restarted,
  (b) with a second node running that is never restarted: seconds until every task
  the dead node held has started again. The baseline is measured the same way, with
  a cap (``--baseline-wait``): its lock-time redelivery takes Q_TIMEOUT + 60 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_delivery_bench \\
        .venv/bin/python benchmarks/delivery_bench.py

The databases named by DATABASE_URL (and the same name + ``_base``) are created and
emptied: never point it at data you keep.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg

BASE_DIR = Path(__file__).resolve().parents[1]

FILL = """
from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.humanhash import uuid
from django_q.signing import SignedPackage
from jobs.models import Job
from jobs.engine.rows import job_row_from_task
rows = []
for _ in range({count}):
    name, task_id = uuid()
    task = {{"id": task_id, "name": name, "func": "time.sleep", "args": ({sleep},),
             "kwargs": {{}}, "started": timezone.now()}}
    rows.append(job_row_from_task(task, queue=Conf.CLUSTER_NAME,
                                  payload=SignedPackage.dumps(task)))
Job.objects.bulk_create(rows, batch_size=2000)
"""


class Tree:
    """A source tree (this one or the baseline) with its own scratch database."""

    def __init__(self, name: str, root: Path, url: str, logs: Path) -> None:
        self.name, self.root, self.url, self.logs = name, root, url, logs
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("Q_", "JOBS_", "S3_"))}
        self.env.update(DATABASE_URL=url, DJANGO_DEBUG="false", LOG_FORMAT="json",
                        DJANGO_SECRET_KEY="bench-" + "x" * 50, DJANGO_ALLOWED_HOSTS="*",
                        PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING")  # fmt: skip
        self.started = 0

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=self.root, env=self.env,
                       check=True, capture_output=True)  # fmt: skip

    def prepare(self) -> None:
        parsed = urlparse(self.url)
        with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{parsed.path[1:]}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{parsed.path[1:]}"')
        self.manage("migrate", "--no-input", "-v", "0")

    def sql(self, query: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def reset(self) -> None:
        self.sql("TRUNCATE jobs_job, jobs_jobattempt RESTART IDENTITY")

    def fill(self, count: int, sleep: float = 0.0) -> None:
        self.manage("shell", "-c", FILL.format(count=count, sleep=sleep))

    def node(self) -> subprocess.Popen:
        self.started += 1
        log = (self.logs / f"{self.name}-{self.started}.log").open("wb")
        return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=self.root,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def remaining(self) -> int:
        return self.sql("SELECT count(*) FROM jobs_job")[0][0]


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def drain(tree: Tree, count: int) -> float:
    tree.reset()
    tree.fill(count)
    node = tree.node()
    samples: list[tuple[float, int]] = []
    try:
        while True:
            left = tree.remaining()
            samples.append((time.monotonic(), left))
            if left == 0:
                break
            time.sleep(0.05)
    finally:
        kill_group(node)
    started = next(i for i, (_, left) in enumerate(samples) if left < count)
    t0, left0 = samples[max(0, started - 1)]
    return left0 / (samples[-1][0] - t0)


def held(tree: Tree) -> dict[int, int]:
    return dict(tree.sql("SELECT id, attempt FROM jobs_job WHERE state = 'running'"))


def started_again(tree: Tree, rows: dict[int, int]) -> bool:
    now = dict(tree.sql("SELECT id, attempt FROM jobs_job WHERE id = ANY(%s)", list(rows)))
    return all(i not in now or now[i] > a for i, a in rows.items())


def recovery(tree: Tree, *, peer: bool, wait: float) -> float | None:
    """Seconds from the kill until every held task started again (None: not within ``wait``)."""
    tree.reset()
    tree.fill(3000, sleep=0.05)
    other = tree.node() if peer else None
    victim = tree.node()
    restarted = None
    try:
        time.sleep(4.0)  # up and working
        kill_group(victim)
        if peer:  # only what the victim held counts, not the peer's own tasks
            rows = dict(tree.sql(
                "SELECT j.id, j.attempt FROM jobs_job j JOIN jobs_workernode n ON n.id = j.owner"
                " WHERE j.state = 'running' AND n.pid = %s", victim.pid,
            ))  # fmt: skip
        else:
            rows = held(tree)
            restarted = tree.node()
        killed = time.monotonic()
        while time.monotonic() - killed < wait:
            if rows and started_again(tree, rows):
                return time.monotonic() - killed
            time.sleep(0.05)
        return None
    finally:
        for process in (other, victim, restarted):
            if process is not None:
                kill_group(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", default="142ec05", help="commit before the change")
    parser.add_argument("--drain", type=int, default=20000, help="tasks per drain round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-wait", type=float, default=90.0)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a scratch PostgreSQL database (it is dropped)")

    with tempfile.TemporaryDirectory(prefix="tablo-delivery-") as tmp:
        tmp_path = Path(tmp)
        base_root = tmp_path / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_root), args.baseline_ref],
                       cwd=BASE_DIR, check=True, capture_output=True)  # fmt: skip
        try:
            trees = [
                Tree("baseline", base_root, url + "_base", tmp_path),
                Tree("tablo", BASE_DIR, url, tmp_path),
            ]
            for tree in trees:
                tree.prepare()
            rates: dict[str, list[float]] = {t.name: [] for t in trees}
            for _ in range(args.rounds):
                for tree in trees:
                    rates[tree.name].append(drain(tree, args.drain))
            ours, base = trees[1], trees[0]
            recoveries = {
                ("tablo", "restart"): recovery(ours, peer=False, wait=60),
                ("tablo", "peer"): recovery(ours, peer=True, wait=60),
                ("baseline", "restart"): recovery(base, peer=False, wait=args.baseline_wait),
            }
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_root)],
                           cwd=BASE_DIR, capture_output=True)  # fmt: skip

    def fmt(value: float | None, cap: float) -> str:
        return f"{value:.1f} s" if value is not None else f"> {cap:.0f} s (not within the wait)"

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"drain, {args.drain} no-op tasks, 2 workers, median of {args.rounds} rounds")
    for name, values in rates.items():
        print(f"  {name:9s} {median[name]:8.1f} tasks/s  rounds: "
              + ", ".join(f"{v:.0f}" for v in values))  # fmt: skip
    print(f"  ratio tablo / baseline: {median['tablo'] / median['baseline']:.3f}")
    print("recovery after kill -9 (every held task started again), from the kill")
    print(f"  tablo, node restarted:        {fmt(recoveries[('tablo', 'restart')], 60)}")
    print(f"  tablo, live peer, no restart: {fmt(recoveries[('tablo', 'peer')], 60)}")
    cap = args.baseline_wait
    print(f"  baseline, node restarted:     {fmt(recoveries[('baseline', 'restart')], cap)}")


if __name__ == "__main__":
    main()
