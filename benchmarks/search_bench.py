"""Search of one's own tablos and files (files.selectors.search) on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tablo_search_bench \
        .venv/bin/python benchmarks/search_bench.py [--files 1000000] [--repeat 7]

Creates the rows once with INSERT ... SELECT generate_series (kept between runs;
``--regenerate`` rebuilds them): 1,000 users with 10 tablos each, the files spread
over them, plus one heavy user owning a tenth of all files. Times one results page
(the COUNT and the first 25 rows, as the search page runs them) for a common word
(about 1 name in 10) and a rare one (a few names), for a typical user and the heavy
one, with the trigram indexes and then without them (dropped inside a transaction
that is rolled back). Prints the median milliseconds of each.
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
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tablo_search_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.paginator import Paginator  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from files import selectors  # noqa: E402
from files.models import TabloFile  # noqa: E402

USERS = 1000
TABLOS_PER_USER = 10
WORDS = ["invoice", "photo", "contract", "scan", "minutes", "plan", "notes", "budget", "report"]


def generate(files: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE files_tablofile, tablos_tablo, auth_user CASCADE")
        cursor.execute(
            """INSERT INTO auth_user (username, password, is_superuser, first_name, last_name,
                                      email, is_staff, is_active, date_joined)
               SELECT 'user' || n, '!', false, '', '', '', false, true, now()
               FROM generate_series(0, %s) AS n""",
            [USERS],  # user<USERS> is the heavy one
        )
        cursor.execute(
            """INSERT INTO tablos_tablo (id, owner_id, name, created_at, updated_at)
               SELECT md5('t' || u.id || '-' || k)::uuid, u.id,
                      'Tablo ' || k || ' of ' || u.username, now(), now()
               FROM auth_user u, generate_series(1, %s) AS k""",
            [TABLOS_PER_USER],
        )
        words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
        # A tenth of the files go to the heavy user, the rest round-robin to the others;
        # one name in ten has "report", one in 100,000 the rare "q7x9".
        cursor.execute(
            f"""INSERT INTO files_tablofile (id, tablo_id, storage_key, original_name,
                                            content_type, size_bytes, created_at)
                SELECT md5('f' || n)::uuid,
                       md5('t' || (SELECT id FROM auth_user WHERE username =
                           CASE WHEN n %% 10 = 0 THEN 'user{USERS}'
                                ELSE 'user' || (n %% {USERS}) END) || '-' || (1 + n %% 10))::uuid,
                       'tablos/x/' || n || '/f',
                       ({words})[1 + (n / 7) %% 9] || '-' || n ||
                         CASE WHEN n %% 100000 = 5 THEN '-q7x9' ELSE '' END || '.pdf',
                       'application/pdf', 1000, now() - (n || ' seconds')::interval
                FROM generate_series(1, %s) AS n""",
            [files],
        )
        cursor.execute("ANALYZE")


def page_ms(user: User, query: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        page = Paginator(selectors.search(user=user, query=query), 25).get_page(1)
        list(page.object_list)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run(repeat: int) -> dict[str, float]:
    typical = User.objects.get(username="user7")
    heavy = User.objects.get(username=f"user{USERS}")
    return {
        f"{who} user, {label}": page_ms(user, query, repeat)
        for who, user in (("typical", typical), ("heavy", heavy))
        for label, query in (("common word 'report'", "report"), ("rare word 'q7x9'", "q7x9"))
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    assert connection.vendor == "postgresql", "PostgreSQL only: set DATABASE_URL"
    call_command("migrate", verbosity=0)
    if args.regenerate or TabloFile.objects.count() != args.files:
        print(f"generating {args.files:,} files ...", flush=True)
        generate(args.files)
    heavy = User.objects.get(username=f"user{USERS}")
    print(
        f"{TabloFile.objects.count():,} files, {User.objects.count():,} users; the heavy user "
        f"owns {TabloFile.objects.filter(tablo_id__in=heavy.tablos.values('id')).count():,}"
    )
    with_index = run(args.repeat)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX files_name_trgm_idx, tablos_name_trgm_idx")
        without_index = run(args.repeat)
        transaction.set_rollback(True)
    print(f"{'median ms per results page':42} {'indexes':>8} {'without':>8}")
    for name, ms in with_index.items():
        print(f"{name:42} {ms:8.1f} {without_index[name]:8.1f}")


if __name__ == "__main__":
    main()
