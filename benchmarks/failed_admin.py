"""Failed tasks admin and list_failed_jobs at 1,000,000 failure rows (PostgreSQL).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_failures_bench \
        .venv/bin/python benchmarks/failed_admin.py [--rows 1000000] [--repeat 5]

Creates the rows once with INSERT ... SELECT generate_series (kept between runs;
``--regenerate`` to rebuild), then times each page in-process (request built,
view run, template rendered: the server's share of a page load) for:

* ours: jobs.admin.FailedJobAdmin (capped count, fixed-choice filters, deferred payload);
* stock-like: the same model with what django-q2's Failure admin and a first
  attempt would do: ``list_filter`` on the columns (SELECT DISTINCT for choices),
  the default paginator (full COUNT(*)), ``show_full_result_count``, every column.

Prints the median milliseconds per page and the ratio stock-like / ours.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tablo_failures_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Production settings: DEBUG on makes every template render carry debug bookkeeping.
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
from django.utils import timezone  # noqa: E402
from django_q.signing import SignedPackage  # noqa: E402

from jobs.models import FailedJob, Job  # noqa: E402

FUNCS = [f"app{i}.tasks.job_{i}" for i in range(10)]
TYPES = [
    "RuntimeError",
    "ValueError",
    "KeyError",
    "OSError",
    "botocore.exceptions.ClientError",
    "django.db.utils.OperationalError",
    "TimeoutError",
    "jobs.engine.errors.DoNotRetry",
]


class StockLikeAdmin(admin.ModelAdmin):
    list_display = ("name", "func", "state", "attempt", "last_error_type", "last_failed_at")
    list_filter = ("state", "func", "last_error_type", "last_failed_at")
    search_fields = ("name", "func", "last_error_message")
    ordering = ("-last_failed_at",)


def generate(rows: int) -> None:
    payload = SignedPackage.dumps(
        {"id": "0" * 32, "name": "bench", "func": FUNCS[0], "args": ("x" * 200,), "kwargs": {}}
    )
    funcs = "ARRAY[" + ",".join(f"'{f}'" for f in FUNCS) + "]"
    types = "ARRAY[" + ",".join(f"'{t}'" for t in TYPES) + "]"
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job, jobs_jobattempt")
        # ~70% dead, ~25% retrying, ~5% queued again; failures spread over 60 days.
        cursor.execute(
            f"""
            INSERT INTO jobs_job (
                task_id, queue, name, func, job_name, priority, payload, state, run_at,
                attempt, max_attempts, created_at, claimed_by, first_failed_at,
                last_failed_at, last_error_type, last_error_message, error_signature,
                progress_message)
            SELECT md5(i::text), 'default', 'task-' || i, ({funcs})[1 + i %% 10], '', 0,
                   %s,
                   CASE WHEN i %% 20 = 0 THEN 'queued' WHEN i %% 4 = 1 THEN 'retrying'
                        ELSE 'dead' END,
                   now() + interval '1 hour', 1 + i %% 20, 20,
                   now() - (i * interval '5 seconds') - interval '1 hour', '',
                   now() - (i * interval '5 seconds') - interval '10 minutes',
                   now() - (i * interval '5 seconds'),
                   ({types})[1 + i %% 8],
                   'object ' || md5((i * 7)::text) || ' failed after ' || (i %% 97) || ' tries',
                   ({types})[1 + i %% 8] || ': object # failed after # tries', ''
            FROM generate_series(1, %s) AS i
            """,
            [payload, rows],
        )
        cursor.execute(
            """
            INSERT INTO jobs_jobattempt (task_id, attempt, func, job_name, succeeded,
                finished_at, error_type, error_message, traceback, cluster, host)
            SELECT task_id, attempt, func, '', false, last_failed_at, last_error_type,
                   last_error_message,
                   'Traceback (most recent call last):' || repeat(E'\n  File "x.py", line 1', 20),
                   'bench', 'host'
            FROM jobs_job
            """
        )
        # What autovacuum does soon after a bulk load: statistics and the visibility
        # map (index-only scans for the capped counts).
        cursor.execute("VACUUM ANALYZE jobs_job")
        cursor.execute("VACUUM ANALYZE jobs_jobattempt")


def request_for(user: User, path: str, query: dict[str, str]):
    request = RequestFactory().get(path, query)
    request.user = user
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    return request


SQL_MS: list[float] = []  # SQL time of the last time_page() runs (ours only)


def time_page(view, user: User, path: str, query: dict[str, str], repeat: int) -> float:
    def once() -> float:
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = view(request_for(user, path, query))
            if hasattr(response, "render"):
                response.render()
        assert response.status_code == 200, response.status_code
        SQL_MS.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
        return (time.perf_counter() - start) * 1000

    once()  # warm caches (templates, plans)
    SQL_MS.clear()
    return statistics.median(once() for _ in range(repeat))


def sql_ms() -> float:
    return statistics.median(SQL_MS)


def time_command(args: list[str], repeat: int) -> float:
    def once() -> float:
        start = time.perf_counter()
        call_command("list_failed_jobs", *args, stdout=StringIO())
        return (time.perf_counter() - start) * 1000

    once()
    return statistics.median(once() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--ours-only", action="store_true", help="skip the slow stock-like pages")
    options = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run on PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)
    existing = Job.objects.filter(last_failed_at__isnull=False).count()
    if options.regenerate or existing != options.rows:
        print(f"generating {options.rows:,} failed tasks (once)...", flush=True)
        start = time.perf_counter()
        generate(options.rows)
        print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com", "bench"
    )
    ours = admin.site._registry[FailedJob]
    stock = StockLikeAdmin(FailedJob, admin.AdminSite(name="stocklike"))
    path = "/admin/jobs/failedjob/"
    rare = hashlib.md5(str(7 * 123_457).encode()).hexdigest()[:16]  # one row's message
    since_24h = (timezone.now() - timedelta(hours=24)).isoformat()
    cases = [
        ("first page", {}, {}),
        ("state=dead", {"state": "dead"}, {"state__exact": "dead"}),
        ("job filter", {"func": FUNCS[3]}, {"func": FUNCS[3]}),
        ("error type", {"error_type": "KeyError"}, {"last_error_type": "KeyError"}),
        ("last 24h", {"failed": "24h"}, {"last_failed_at__gte": since_24h}),
        ("search common", {"q": "failed after"}, {"q": "failed after"}),
        ("search 1%", {"q": "after 96 tries"}, {"q": "after 96 tries"}),
        ("search one row", {"q": rare}, {"q": rare}),
        ("search no match", {"q": "zzz-never"}, {"q": "zzz-never"}),
        ("page 10", {"p": "10"}, {"p": "10"}),
    ]
    print(f"\n{Job.objects.count():,} rows; median of {options.repeat}; server time per page")
    print(f"{'page':<16}{'ours ms':>10}{'(SQL ms)':>10}{'stock-like ms':>16}{'ratio':>8}")
    for label, our_query, stock_query in cases:
        our_ms = time_page(ours.changelist_view, user, path, our_query, options.repeat)
        our_sql = sql_ms()
        if options.ours_only:
            print(f"{label:<16}{our_ms:>10.1f}{our_sql:>10.1f}")
            continue
        stock_ms = time_page(stock.changelist_view, user, path, stock_query, options.repeat)
        print(
            f"{label:<16}{our_ms:>10.1f}{our_sql:>10.1f}{stock_ms:>16.1f}{stock_ms / our_ms:>7.1f}x"
        )
    job = Job.objects.filter(last_failed_at__isnull=False).order_by("-last_failed_at").first()
    detail = time_page(
        lambda r: ours.change_view(r, str(job.id)), user, f"{path}{job.id}/change/", {}, 5
    )
    print(f"{'detail page':<16}{detail:>10.1f}{sql_ms():>10.1f}")
    for window in ("24h", "7d", "any"):
        ms = time_page(ours.groups_view, user, f"{path}groups/", {"failed": window}, 5)
        print(f"{'groups ' + window:<16}{ms:>10.1f}{sql_ms():>10.1f}")
    print("\nlist_failed_jobs")
    for args in (
        [],
        ["--state", "dead"],
        ["--func", FUNCS[3]],
        ["--since", "2h"],
        ["--error", "96 tries"],
        ["--error", rare],
        ["--json"],
    ):
        print(f"  {' '.join(args) or '(default)':<30}{time_command(args, options.repeat):>8.1f} ms")


if __name__ == "__main__":
    main()
