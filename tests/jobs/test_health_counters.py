from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf

from jobs.engine import counters, registry
from jobs.models import TaskCounter
from tests.support import runtime as support

pytestmark = pytest.mark.django_db


def test_runs_are_added_per_minute_and_cluster() -> None:
    now = timezone.now().replace(second=30)
    for _ in range(3):
        counters.count_run(success=True, at=now)
    counters.count_run(success=False, at=now)
    counters.count_run(success=True, at=now, cluster="other")
    rows = {(r.cluster, r.succeeded, r.failed) for r in TaskCounter.objects.all()}
    assert rows == {(Conf.CLUSTER_NAME, 3, 1), ("other", 1, 0)}
    assert TaskCounter.objects.get(cluster="other").minute == now.replace(second=0, microsecond=0)


def test_totals_since_sum_the_buckets_in_range() -> None:
    now = timezone.now()
    counters.count_run(success=True, at=now)
    counters.count_run(success=False, at=now - timedelta(minutes=59))
    counters.count_run(success=True, at=now - timedelta(minutes=61))
    assert counters.totals_since(now - timedelta(hours=1)) == {"succeeded": 1, "failed": 1}


def test_prune_drops_old_buckets() -> None:
    now = timezone.now()
    counters.count_run(success=True, at=now - timedelta(days=3))
    counters.count_run(success=True, at=now)
    assert counters.prune(now=now) == 1
    assert TaskCounter.objects.count() == 1


def test_the_monitor_signal_counts_every_run() -> None:
    with support.conf(SYNC=True):
        registry.enqueue("tests.echo", "a", on_commit=False)
        with pytest.raises(RuntimeError):
            registry.enqueue("tests.boom", on_commit=False)
    assert counters.totals_since(timezone.now() - timedelta(minutes=1)) == {
        "succeeded": 1,
        "failed": 0,  # a sync failure re-raises before the monitor sees it
    }


def test_the_receiver_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs):
        raise RuntimeError("nope")

    monkeypatch.setattr(counters, "count_run", broken)
    counters.on_post_execute(sender="django_q", task={"success": True})
    assert support.events(caplog, "task counter failed")


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
    counters.count_run(success=True, at=now)  # opens the connection
    _break_the_connection()
    counters.count_run(success=False, at=now)  # this flush fails
    counters.count_run(success=True, at=now)  # and this one writes all that is pending
    assert counters.totals_since(now - timedelta(minutes=1)) == {"succeeded": 2, "failed": 1}
    failures = [r for r in caplog.records if "task counters not written" in str(r.msg)]
    assert len(failures) == 1
