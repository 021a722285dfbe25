"""Jobs -> Overview at 1,000,000 history rows (PostgreSQL).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_dashboard_bench \
        .venv/bin/python benchmarks/dashboard.py [--rows 1000000] [--repeat 7]

Creates the rows once with INSERT ... SELECT generate_series (kept between runs;
``--regenerate`` to rebuild):

* ``--rows`` per-minute ``JobStat`` rows (100 jobs, one row per job and minute,
  as many minutes back as that makes), their hour rows and totals;
* the same number of per-run ``JobAttempt`` rows over the last 7 days (the
  baseline's history: one row per run, with its start and end);
* one queue sample per queue and minute (3 queues) and ``--dead`` dead tasks.

Then times, in-process (request built, view run, template rendered: the server's
share of a page load), the Overview page and its 5-second ``data/`` refresh, and
as the baseline the same figures (runs per minute over an hour and per hour over
7 days, per-job runs, failures, p50/p95 over 24 h) computed from the per-run
rows. Prints the median milliseconds and the ratio baseline / ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tablo_dashboard_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-" + "k" * 50)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")

import django

django.setup()

from django.contrib import admin  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.messages.storage.fallback import FallbackStorage  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from jobs.models import JobStat, Overview  # noqa: E402

JOBS = 100
QUEUES = ("tablo", "reports", "mail")

BASELINE_SQL = [
    # runs per minute, last hour
    """SELECT date_trunc('minute', finished_at) AS m, count(*) FILTER (WHERE succeeded),
              count(*) FILTER (WHERE NOT succeeded)
       FROM jobs_jobattempt WHERE finished_at >= now() - interval '1 hour' GROUP BY m""",
    # runs per hour, last 7 days
    """SELECT date_trunc('hour', finished_at) AS h, count(*) FILTER (WHERE succeeded),
              count(*) FILTER (WHERE NOT succeeded)
       FROM jobs_jobattempt WHERE finished_at >= now() - interval '7 days' GROUP BY h""",
    # per job, last 24 hours
    """SELECT func, count(*), count(*) FILTER (WHERE NOT succeeded),
              percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - started_at),
              percentile_cont(0.95) WITHIN GROUP (ORDER BY finished_at - started_at),
              max(finished_at) FILTER (WHERE NOT succeeded)
       FROM jobs_jobattempt WHERE finished_at >= now() - interval '24 hours' GROUP BY func""",
]


def generate(rows: int, dead: int) -> None:
    minutes = rows // JOBS
    buckets = ", ".join(f"d{i}" for i in range(13))
    # Runs land in buckets 0..8 (up to 5 s); the rest stay zero.
    bucket_values = ", ".join(f"CASE WHEN (m + j) %% 9 = {i} THEN 5 ELSE 0 END" for i in range(9))
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_jobstat, jobs_queuesample, jobs_jobattempt, jobs_job")
        cursor.execute(
            f"""
            INSERT INTO jobs_jobstat (span, start, queue, func, succeeded, failed,
                duration_sum, last_failed_at, {buckets})
            SELECT 'minute', date_trunc('minute', now()) - m * interval '1 minute',
                   (ARRAY['tablo','reports','mail'])[1 + j %% 3], 'app.tasks.job_' || j,
                   5 - (CASE WHEN (m + j) %% 10 = 0 THEN 1 ELSE 0 END),
                   CASE WHEN (m + j) %% 10 = 0 THEN 1 ELSE 0 END, 2.5,
                   CASE WHEN (m + j) %% 10 = 0
                        THEN date_trunc('minute', now()) - m * interval '1 minute' END,
                   {bucket_values}, 0, 0, 0, 0
            FROM generate_series(0, %s) AS m, generate_series(1, %s) AS j
            """,
            [minutes - 1, JOBS],
        )
        cursor.execute(
            f"""
            INSERT INTO jobs_jobstat (span, start, queue, func, succeeded, failed,
                duration_sum, last_failed_at, {buckets})
            SELECT 'hour', date_trunc('hour', start), queue, func, sum(succeeded), sum(failed),
                   sum(duration_sum), max(last_failed_at),
                   {", ".join(f"sum(d{i})" for i in range(13))}
            FROM jobs_jobstat WHERE span = 'minute' GROUP BY 2, 3, 4
            """
        )
        cursor.execute(
            f"""
            INSERT INTO jobs_jobstat (span, start, queue, func, succeeded, failed,
                duration_sum, last_failed_at, {buckets})
            SELECT 'total', '2000-01-01T00:00:00Z', queue, func, sum(succeeded), sum(failed),
                   sum(duration_sum), max(last_failed_at),
                   {", ".join(f"sum(d{i})" for i in range(13))}
            FROM jobs_jobstat WHERE span = 'hour' GROUP BY 3, 4
            """
        )
        cursor.execute(
            """
            INSERT INTO jobs_queuesample (minute, queue, queued, retrying, running, dead,
                oldest_queued_age)
            SELECT date_trunc('minute', now()) - m * interval '1 minute', q,
                   (m * 7) %% 50, m %% 5, 2, 100, (m %% 60) * 1.5
            FROM generate_series(0, %s) AS m, unnest(ARRAY['tablo','reports','mail']) AS q
            """,
            [minutes - 1],
        )
        cursor.execute(
            """
            INSERT INTO jobs_jobattempt (task_id, attempt, func, job_name, succeeded,
                started_at, finished_at, error_type, error_message, traceback, cluster, host)
            SELECT md5(i::text), 1, 'app.tasks.job_' || (1 + i %% 100), '', i %% 10 <> 0,
                   now() - (i * interval '1 second' * 604800 / %s) - interval '1 second' * (i %% 5),
                   now() - (i * interval '1 second' * 604800 / %s),
                   CASE WHEN i %% 10 = 0 THEN 'RuntimeError' ELSE '' END, '', '', 'tablo', 'h'
            FROM generate_series(1, %s) AS i
            """,
            [rows, rows, rows],
        )
        cursor.execute(
            """
            INSERT INTO jobs_job (task_id, queue, name, func, job_name, priority, payload,
                state, run_at, attempt, max_attempts, created_at, claimed_by, first_failed_at,
                last_failed_at, last_error_type, last_error_message, error_signature,
                progress_message)
            SELECT md5('job' || i), (ARRAY['tablo','reports','mail'])[1 + i %% 3], 'task',
                   'app.tasks.job_' || (1 + i %% 100), '', 0, 'payload',
                   CASE WHEN i %% 100 = 0 THEN 'queued' ELSE 'dead' END, now(), 1, 1,
                   now() - i * interval '10 seconds', '', now() - i * interval '10 seconds',
                   now() - i * interval '10 seconds', 'RuntimeError', 'boom', 'RuntimeError: boom',
                   ''
            FROM generate_series(1, %s) AS i
            """,
            [dead],
        )
        for table in ("jobs_jobstat", "jobs_queuesample", "jobs_jobattempt", "jobs_job"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def request_for(user: User, path: str):
    request = RequestFactory().get(path)
    request.user = user
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    return request


def time_view(view, user: User, path: str, repeat: int) -> tuple[float, float, int]:
    sql: list[float] = []
    queries_per_page = 0

    def once() -> float:
        nonlocal queries_per_page
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = view(request_for(user, path))
            if hasattr(response, "render"):
                response.render()
        assert response.status_code == 200, response.status_code
        sql.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
        queries_per_page = len(queries.captured_queries)
        return (time.perf_counter() - start) * 1000

    once()  # warm caches (templates, plans)
    sql.clear()
    total = statistics.median(once() for _ in range(repeat))
    return total, statistics.median(sql), queries_per_page


def time_baseline(repeat: int) -> float:
    def once() -> float:
        start = time.perf_counter()
        with connection.cursor() as cursor:
            for sql in BASELINE_SQL:
                cursor.execute(sql)
                cursor.fetchall()
        return (time.perf_counter() - start) * 1000

    once()
    return statistics.median(once() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true")
    options = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run on PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)
    existing = JobStat.objects.filter(span="minute").count()
    if options.regenerate or existing != (options.rows // JOBS) * JOBS:
        print(f"generating {options.rows:,} minute rows and {options.rows:,} runs (once)...")
        start = time.perf_counter()
        generate(options.rows, options.dead)
        print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com", "bench"
    )
    page = admin.site._registry[Overview]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobs_jobstat")
        stat_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM jobs_jobattempt")
        attempt_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM jobs_job")
        job_rows = cursor.fetchone()[0]
    print(
        f"\n{stat_rows:,} JobStat rows, {attempt_rows:,} JobAttempt rows, {job_rows:,} Job rows;"
        f" {JOBS} jobs, {len(QUEUES)} queues; median of {options.repeat}"
    )
    print(f"{'':<26}{'total ms':>10}{'SQL ms':>10}{'queries':>9}")
    ours_ms, ours_sql, ours_queries = time_view(
        page.changelist_view, user, "/admin/jobs/overview/", options.repeat
    )
    print(f"{'Overview page':<26}{ours_ms:>10.1f}{ours_sql:>10.1f}{ours_queries:>9}")
    data_ms, data_sql, data_queries = time_view(
        page.data_view, user, "/admin/jobs/overview/data/", options.repeat
    )
    print(f"{'data/ (5 s refresh)':<26}{data_ms:>10.1f}{data_sql:>10.1f}{data_queries:>9}")
    baseline_ms = time_baseline(options.repeat)
    print(f"{'baseline: per-run rows':<26}{baseline_ms:>10.1f}{baseline_ms:>10.1f}{3:>9}")
    print(f"\nbaseline (figures only, no page) / Overview page: {baseline_ms / ours_ms:.1f}x")


if __name__ == "__main__":
    main()
