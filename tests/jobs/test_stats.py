from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf

from jobs.engine import registry, stats
from jobs.models import JobStat
from tests.support import runtime as support

pytestmark = pytest.mark.django_db


def count(*, success: bool, at, queue: str = "", func: str = "tests.echo") -> None:
    stats.count_run(
        func=func, queue=queue or Conf.CLUSTER_NAME, success=success, duration=0.01, at=at
    )


def test_runs_are_added_per_minute_queue_and_job() -> None:
    now = timezone.now().replace(second=30)
    for _ in range(3):
        count(success=True, at=now)
    count(success=False, at=now)
    count(success=True, at=now, queue="other")
    minutes = JobStat.objects.filter(span=JobStat.Span.MINUTE)
    assert {(r.queue, r.succeeded, r.failed) for r in minutes} == {
        (Conf.CLUSTER_NAME, 3, 1),
        ("other", 1, 0),
    }
    assert minutes.get(queue="other").start == now.replace(second=0, microsecond=0)


def test_totals_since_sum_the_buckets_in_range() -> None:
    now = timezone.now()
    count(success=True, at=now)
    count(success=False, at=now - timedelta(minutes=59), func="tests.boom")
    count(success=True, at=now - timedelta(minutes=61))
    assert stats.totals_since(now - timedelta(hours=1)) == {"succeeded": 1, "failed": 1}


def test_prune_drops_old_minutes_and_keeps_the_totals() -> None:
    now = timezone.now()
    count(success=True, at=now - timedelta(days=3))
    count(success=True, at=now)
    assert stats.prune(now=now) == 1
    assert not JobStat.objects.filter(span=JobStat.Span.MINUTE, start__lt=now - timedelta(days=2))
    assert JobStat.objects.get(span=JobStat.Span.TOTAL).succeeded == 2


def test_the_monitor_signal_counts_every_run() -> None:
    with support.conf(SYNC=True):
        registry.enqueue("tests.echo", "a", on_commit=False)
        with pytest.raises(RuntimeError):
            registry.enqueue("tests.boom", on_commit=False)
    assert stats.totals_since(timezone.now() - timedelta(minutes=1)) == {
        "succeeded": 1,
        "failed": 0,  # a sync failure re-raises before the monitor sees it
    }


def test_the_receiver_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs):
        raise RuntimeError("nope")

    monkeypatch.setattr(stats, "count_run", broken)
    stats.on_post_execute(sender="django_q", task={"success": True})
    assert support.events(caplog, "job stats failed")


def _break_the_connection() -> None:
    """Kill this connection's session under Django, as a database restart does."""
    if connection.vendor == "postgresql":
        pid = connection.connection.info.backend_pid
        with _other() as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
    else:
        connection.connection.close()


@contextlib.contextmanager
def _other():
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
        autocommit=True,
    ) as other:
        yield other


@pytest.mark.django_db(transaction=True)
def test_a_failed_flush_keeps_its_counts_and_the_next_one_reconnects(caplog) -> None:
    now = timezone.now()
    count(success=True, at=now)  # opens the connection
    _break_the_connection()
    count(success=False, at=now)  # this flush fails
    count(success=True, at=now)  # and this one writes all that is pending
    assert stats.totals_since(now - timedelta(minutes=1)) == {"succeeded": 2, "failed": 1}
    assert JobStat.objects.get(span=JobStat.Span.TOTAL).succeeded == 2
    failures = [r for r in caplog.records if "job stats not written" in str(r.msg)]
    assert len(failures) == 1


@pytest.mark.django_db(transaction=True)
def test_a_flush_is_one_transaction_that_does_not_wait_for_the_disk() -> None:
    upserts = []

    def watch(execute, sql, params, many, context):
        if sql.startswith(f"INSERT INTO {JobStat._meta.db_table}"):
            setting = None
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT current_setting('synchronous_commit')")
                    setting = cursor.fetchone()[0]
            upserts.append((connection.in_atomic_block, many, setting))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        count(success=True, at=timezone.now())

    # The minute, the hour and the total in one statement of one transaction; on
    # PostgreSQL its commit does not wait for the disk, nor does a peer waiting on its rows.
    expected = "off" if connection.vendor == "postgresql" else None
    assert upserts == [(True, True, expected)]
    assert JobStat.objects.get(span=JobStat.Span.TOTAL).succeeded == 1
