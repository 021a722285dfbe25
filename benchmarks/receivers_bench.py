"""The worker runtime's per-task receivers, in microseconds per task, in one process.

Runs ``on_pre_execute`` and ``on_post_execute_in_worker`` (what every task pays in a
worker, apart from django-q2 itself) N times on a package, and as the same-run
baseline, one ``pickle`` round trip of that package (what each hop between django-q2's
processes costs it). Logging goes nowhere, so only the building of the lines counts.

    .venv/bin/python benchmarks/receivers_bench.py [--tasks 20000]
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("LOG_LEVEL", "INFO")


def _package(i: int) -> dict[str, object]:
    return {"id": f"{i:032x}", "name": "bench", "func": "jobs.tasks.heartbeat", "ack_id": (i, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    args = parser.parse_args()

    import django

    django.setup()
    from jobs.engine import runtime

    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
    logging.getLogger().addHandler(logging.NullHandler())

    def receivers(i: int) -> None:
        task = _package(i)
        runtime.on_pre_execute(sender="django_q", func=task["func"], task=task)
        task["success"] = True
        runtime.on_post_execute_in_worker(sender="django_q", func=task["func"], task=task)

    def pickle_hop(i: int) -> None:
        pickle.loads(pickle.dumps(_package(i)))

    figures = {}
    for name, step in (("receivers", receivers), ("pickle hop", pickle_hop)):
        for i in range(2000):
            step(i)
        started = time.perf_counter()
        for i in range(args.tasks):
            step(i)
        figures[name] = (time.perf_counter() - started) / args.tasks * 1e6
    print(f"runtime receivers: {figures['receivers']:.1f} us/task")
    print(f"baseline, one pickle hop of the package: {figures['pickle hop']:.1f} us/task")
    print(f"ratio: {figures['receivers'] / figures['pickle hop']:.1f}x")


if __name__ == "__main__":
    main()
