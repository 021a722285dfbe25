"""Queue table growth: the drain rate with a deep queue, and the table's size over time.

Two questions, one run, on the project's defaults (results kept), 2 worker processes:

1. Does a deep queue slow the drain? The rate of draining ``--drain`` tasks from a
   queue that holds only them (baseline), then from a queue holding ``--deep`` tasks
   (the first ``--drain`` of them): printed with their ratio.
2. Does the queue table grow with the tasks that pass through it? One node runs while
   ``--through`` tasks are queued in rounds of ``--round``; after each round drains,
   the size of ``jobs_job`` (heap, indexes and TOAST) and its dead tuples are printed.
   The verdict compares the size after the last round with the largest size seen after
   the second (by then the table holds a round's worth of reusable space).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_growth \\
        .venv/bin/python benchmarks/table_growth.py              # 500,000 deep, 1,000,000 through
    .venv/bin/python benchmarks/table_growth.py --quick          # 50,000 / 100,000

The database is created if missing, migrated and emptied: never point it at a
database whose data you want to keep.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))

from benchmarks.queue_bench import Bench, mode_env, prepare_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/tablo_growth"


def drain_rate(bench: Bench, *, queued: int, count: int, name: str) -> float:
    """Tasks/s while the first ``count`` of ``queued`` tasks drain (one node, 2 workers)."""
    worker = bench.cluster(name).start(wait_ready=False)
    samples: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + max(300, count / 5)
        while time.monotonic() < deadline:
            left = bench.remaining()
            samples.append((time.monotonic(), left))
            if left <= queued - count:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{name}: {samples[-1][1]} of {queued} left after the deadline")
    finally:
        worker.kill()
    started = max(0, next(i for i, (_, left) in enumerate(samples) if left < queued) - 1)
    (t0, left0), (t1, left1) = samples[started], samples[-1]
    return (left0 - left1) / (t1 - t0)


def table_figures() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size('jobs_job'), pg_relation_size('jobs_job'), "
            "n_dead_tup, autovacuum_count, vacuum_count "
            "FROM pg_stat_user_tables WHERE relname = 'jobs_job'"
        )
        total, heap, dead, autovacuums, vacuums = cursor.fetchone()
    return {
        "total_mb": round(total / 2**20, 1),
        "heap_mb": round(heap / 2**20, 1),
        "dead_tuples": dead,
        "autovacuums": autovacuums + vacuums,
    }


def growth(bench: Bench, *, through: int, per_round: int) -> list[dict[str, Any]]:
    worker = bench.cluster("growth").start()
    rounds: list[dict[str, Any]] = []
    passed = 0
    try:
        while passed < through:
            bench.fill(per_round)
            deadline = time.monotonic() + max(300, per_round / 5)
            while bench.remaining() and time.monotonic() < deadline:
                time.sleep(0.2)
            if bench.remaining():
                raise RuntimeError(f"round {len(rounds) + 1} did not drain")
            passed += per_round
            rounds.append({"passed": passed, **table_figures()})
            print(
                f"  {passed:>10,} passed: jobs_job {rounds[-1]['total_mb']:>7} MB "
                f"(heap {rounds[-1]['heap_mb']} MB), {rounds[-1]['dead_tuples']:,} dead tuples, "
                f"{rounds[-1]['autovacuums']} vacuums",
                flush=True,
            )
    finally:
        worker.kill()
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 deep, 100,000 through")
    parser.add_argument("--drain", type=int, help="tasks timed in each drain (20,000)")
    parser.add_argument("--deep", type=int, help="tasks queued for the deep drain (500,000)")
    parser.add_argument("--through", type=int, help="tasks passed through (1,000,000)")
    parser.add_argument("--round", type=int, help="tasks queued per round (100,000)")
    args = parser.parse_args()
    quick = args.quick
    drain = args.drain or (5_000 if quick else 20_000)
    deep = args.deep or (50_000 if quick else 500_000)
    through = args.through or (100_000 if quick else 1_000_000)
    per_round = args.round or (20_000 if quick else 100_000)

    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not url.startswith("postgres"):
        sys.exit("table_growth.py measures PostgreSQL: set DATABASE_URL=postgres://...")
    prepare_database(url)
    os.environ.update(mode_env("tablo", url))
    with tempfile.TemporaryDirectory(prefix="table-growth-") as workdir:
        bench = Bench(mode="tablo", workdir=Path(workdir))

        bench.reset()
        bench.fill(drain)
        shallow = drain_rate(bench, queued=drain, count=drain, name="shallow")
        print(f"drain of {drain:,} from a queue of {drain:,}: {shallow:,.0f} tasks/s", flush=True)

        bench.reset()
        print(f"queueing {deep:,} tasks ...", flush=True)
        bench.fill(deep)
        deep_rate = drain_rate(bench, queued=deep, count=drain, name="deep")
        print(f"drain of {drain:,} from a queue of {deep:,}: {deep_rate:,.0f} tasks/s", flush=True)
        print(f"deep / shallow: {deep_rate / shallow:.2f}x", flush=True)

        bench.reset()
        print(f"passing {through:,} tasks through, {per_round:,} per round:", flush=True)
        rounds = growth(bench, through=through, per_round=per_round)
        settled = max(r["total_mb"] for r in rounds[: min(2, len(rounds))])
        last = rounds[-1]["total_mb"]
        print(
            f"jobs_job after {rounds[-1]['passed']:,}: {last} MB; largest after the first "
            f"two rounds: {settled} MB; last / that: {last / settled:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
