"""Where a worker's CPU goes while it drains no-op tasks: py-spy, summed by part of the loop.

Fills the queue with N no-op tasks, starts ``manage.py qcluster`` (2 workers), samples
each worker process with py-spy (``--gil``: only while it holds the interpreter, i.e.
CPU spent in Python) for a few seconds of the drain, and prints each part's share of
the samples. Needs py-spy (benchmarks/requirements-profile.txt).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_profile \\
        .venv/bin/python benchmarks/worker_profile.py [--tasks 20000] [--seconds 8] \\
        [--api django] [--raw stacks.txt]

``--api django`` fills the queue with Django ``@task`` no-ops (``.enqueue()``) instead of
``async_task``; ``--raw`` keeps py-spy's stacks for a closer look.

The database is created if missing, migrated and emptied: never point it at data you keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/tablo_profile"

# Each sample goes to the first part one of its frames names (the order matters).
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("the task's own function", ("queue_tasks.py", "django_tasks_funcs.py")),
    ("Django task: TaskResult, signals, JSON return value", ("django_tasks/",)),
    ("django-q2 payload: signature check and unpickling", ("SignedPackage.loads",)),
    ("log line and structlog context", ("structlog", "_log_finished")),
    ("signals (pre_execute, post_execute_in_worker, post_execute)", ("Signal.send",)),
    ("run counters and per-job stats", ("counters.py", "stats.py")),
    ("finish: rows deleted, results inserted (SQL, arrays)", ("results.py",)),
    ("claim (SQL)", ("transitions.py",)),
    ("start marks: the thread's UPDATE", ("Marks._run",)),
    ("start marks: handing a mark to the thread", ("Marks.mark",)),
    ("start marks: waiting for a mark before an outcome", ("Marks.wait",)),
    ("alarm (the task's timeout timer)", ("alarm",)),
    ("finding the function and its job", ("locate", "spec_for", "func_path")),
    ("the rest of the worker loop", ("worker.py", "execute.py", "context.py")),
]


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def summarize(raw: list[str]) -> list[tuple[str, float]]:
    counts: Counter[str] = Counter()
    total = 0
    for line in raw:
        stack, _, n = line.rstrip().rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        frames = stack.split(";")
        part = next(
            (name for name, keys in PARTS if any(k in f for f in frames for k in keys)),
            "other (interpreter, psycopg, threads)",
        )
        counts[part] += int(n)
    return [(name, 100 * n / total) for name, n in counts.most_common()] if total else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--api", choices=["async_task", "django"], default="async_task")
    parser.add_argument("--raw", type=Path, help="also write py-spy's stacks to this file")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy is missing: pip install -r benchmarks/requirements-profile.txt")
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    env = dict(os.environ, DATABASE_URL=url, LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    name = url.rsplit("/", 1)[1]
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name],
                   capture_output=True, check=False)  # fmt: skip
    manage(env, "migrate", "--no-input", "-v", "0")
    enqueue = {
        "async_task": "async_task('benchmarks.queue_tasks.noop')",
        "django": "noop.enqueue()",
    }[args.api]
    fill = (
        "from django.db import transaction\nfrom django_q.tasks import async_task\n"
        "from benchmarks.django_tasks_funcs import noop\n"
        "from jobs.models import Job\nJob.objects.all().delete()\n"
        f"with transaction.atomic():\n    for _ in range({args.tasks}):\n"
        f"        {enqueue}\n"
    )
    manage(env, "shell", "-c", fill)
    with tempfile.TemporaryDirectory() as out:
        log = open(Path(out) / "qcluster.log", "w")  # noqa: SIM115 - closed below
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=BASE_DIR,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            workers: list[str] = []
            while len(workers) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)  # polling the process table for the forked workers
                found = subprocess.run(["pgrep", "-P", str(cluster.pid)],
                                       capture_output=True, text=True, check=False)  # fmt: skip
                workers = found.stdout.split()
            spies = [
                subprocess.Popen([spy, "record", "-p", pid, "-d", str(int(args.seconds)),
                                  "-r", "250", "--gil", "--nonblocking", "-f", "raw",
                                  "-o", str(Path(out) / f"{pid}.txt")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for pid in workers
            ]  # fmt: skip
            for one in spies:
                one.wait()
        finally:
            cluster.send_signal(signal.SIGTERM)
            cluster.wait(60)
            log.close()
        raw = [line for p in Path(out).glob("*.txt") for line in p.read_text().splitlines()]
    if args.raw:
        args.raw.write_text("\n".join(raw) + "\n")
    print(f"worker CPU by part of the loop ({len(raw)} distinct stacks, 2 workers):")
    print("| part | share of CPU samples |\n|---|---|")
    for name, share in summarize(raw):
        print(f"| {name} | {share:.0f}% |")


if __name__ == "__main__":
    main()
