"""Worker runtime benchmark: enqueue paths, start-up heartbeat, /healthz cost.

Prints each figure with its baseline from the same run:

1. enqueue N tasks: django-q2 ``async_task`` per task (baseline), ``registry.enqueue``
   per task, ``registry.enqueue_many`` (one INSERT)
2. a fresh ``qcluster``: seconds to the first heartbeat row (start-up beat) against
   seconds to the first run of the heartbeat schedule (django-q2's scheduler alone)
3. ``GET /healthz`` with Q queued and D dead tasks: median and p95 latency, queries

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_bench_runtime \\
        .venv/bin/python benchmarks/runtime_bench.py [--tasks 2000] [--skip-startup]

The database is created if missing, migrated and emptied: never point it at data you keep.
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

BASE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/tablo_bench_runtime"
sys.path.insert(0, str(BASE_DIR))


def setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if database_url.startswith("postgres"):
        name = database_url.rsplit("/", 1)[1]
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-U", "postgres", name],
            capture_output=True,
            check=False,
        )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def empty() -> None:
    from django_q.models import OrmQ, Task

    from jobs.models import Job, JobAttempt, TaskCounter, WorkerHeartbeat

    for model in (Job, JobAttempt, TaskCounter, WorkerHeartbeat, Task, OrmQ):
        model.objects.all().delete()


def bench_enqueue(n: int) -> None:
    from django_q.tasks import async_task

    from jobs.engine import registry

    def timed(label: str, fn) -> float:
        empty()
        started = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - started
        print(f"  {label:<34} {elapsed * 1000 / n:8.3f} ms/task  {n / elapsed:9.0f} tasks/s")
        return elapsed

    print(f"1. enqueue {n} tasks (autocommit, one process)")
    base = timed(
        "async_task per task (baseline)",
        lambda: [async_task("benchmarks.runtime_jobs.noop", str(i)) for i in range(n)],
    )
    one = timed(
        "registry.enqueue per task",
        lambda: [registry.enqueue("bench.noop", str(i)) for i in range(n)],
    )
    batch = timed(
        "registry.enqueue_many (batch)",
        lambda: registry.enqueue_many("bench.noop", [(str(i),) for i in range(n)]),
    )
    print(f"  ratio async_task / enqueue        {base / one:8.2f}x")
    print(f"  ratio async_task / enqueue_many   {base / batch:8.2f}x")


def bench_startup() -> None:
    from django_q.models import Schedule

    from jobs.models import WorkerHeartbeat
    from jobs.schedules import sync_schedules

    empty()
    Schedule.objects.all().delete()
    sync_schedules()
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        first_beat = scheduled = None
        try:
            while time.monotonic() - started < 90 and scheduled is None:
                if first_beat is None and WorkerHeartbeat.objects.exists():
                    first_beat = time.monotonic() - started
                # django-q2's scheduler (a pass of the supervisor's) stores the id of the
                # task it created; its "from schedule" log line is on the django-q
                # logger, which the project's LOGGING keeps at WARNING.
                if Schedule.objects.filter(name="heartbeat").exclude(task=None).exists():
                    scheduled = time.monotonic() - started
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(60)
    print("2. fresh qcluster (2 workers): time to a heartbeat")
    print(f"  start-up heartbeat row            {first_beat:8.2f} s")
    if scheduled is None:
        print("  heartbeat schedule first fired    not within 90 s")
    else:
        print(f"  heartbeat schedule first fired    {scheduled:8.2f} s (baseline)")
        print(f"  ratio                             {scheduled / first_beat:8.1f}x sooner")
    log.unlink()


def bench_health(queued: int, dead: int, requests: int = 50) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from jobs.engine import registry
    from jobs.models import Job

    empty()
    registry.enqueue_many("bench.noop", [(str(i),) for i in range(queued + dead)])
    ids = Job.objects.order_by("id").values_list("id", flat=True)[:dead]
    Job.objects.filter(id__in=list(ids)).update(
        state=Job.State.DEAD, last_failed_at=timezone.now(), last_error_type="E"
    )
    client = Client()
    print(f"3. GET /healthz with {queued} queued and {dead} dead tasks ({requests} requests)")
    for label in ("fresh rows", "after VACUUM ANALYZE"):
        if label != "fresh rows" and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE jobs_job")
        client.get("/healthz")
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get("/healthz")
            times.append(time.perf_counter() - started)
            assert response.status_code == 200
        p95 = sorted(times)[int(len(times) * 0.95) - 1]
        print(
            f"  {label:<20} median {statistics.median(times) * 1000:7.2f} ms, "
            f"p95 {p95 * 1000:7.2f} ms"
        )
    with CaptureQueriesContext(connection) as queries:
        client.get("/healthz")
    baseline = []
    for _ in range(requests):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        baseline.append(time.perf_counter() - started)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    print(f"3. GET /healthz with {queued} queued and {dead} dead tasks ({requests} requests)")
    print(
        f"  median {statistics.median(times) * 1000:7.2f} ms, p95 {p95 * 1000:7.2f} ms, "
        f"{len(queries.captured_queries)} queries"
    )
    print(f"  SELECT 1 round trip (baseline)    {statistics.median(baseline) * 1000:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--queued", type=int, default=20000)
    parser.add_argument("--dead", type=int, default=2000)
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    setup(args.database_url)
    import benchmarks.runtime_jobs  # noqa: F401  (registers bench.noop)

    bench_enqueue(args.tasks)
    if not args.skip_startup:
        bench_startup()
    bench_health(args.queued, args.dead)
    empty()


if __name__ == "__main__":
    main()
