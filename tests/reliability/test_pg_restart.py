"""PostgreSQL restarted under a running worker (a throwaway cluster, never the shared server)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.models import JobStat
from tests.reliability.jobs import EFFECT_TABLE_SQL
from tests.reliability.support import clean_env, enqueue_records_in, run_manage
from tests.support.cluster import Worker
from tests.support.pgcluster import PgCluster

pytestmark = pytest.mark.slow

RECORD = "tests.reliability.jobs.record"


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster().init()
    cluster.start()
    yield cluster
    cluster.destroy()


def effects(pg: PgCluster, db: str) -> dict[str, int]:
    with pg.connect(db) as conn:
        return dict(conn.execute("SELECT key, runs FROM rel_effect").fetchall())


def wait_for(predicate, *, timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # the database may still be coming back
            pass
        assert worker.process is not None
        assert worker.process.poll() is None, worker.log()
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.log()[-4000:]}")


def test_worker_reconnects_after_postgresql_restart(pg: PgCluster, tmp_path: Path) -> None:
    url = pg.create_database("tablo_fault")
    migrated = run_manage("migrate", "--no-input", DATABASE_URL=url)
    assert migrated.returncode == 0, migrated.stderr
    with pg.connect("tablo_fault") as conn:
        conn.execute(EFFECT_TABLE_SQL)

    env = clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=url,
        PYTHONUNBUFFERED="1",
        LOG_FORMAT="json",
        Q_WORKERS="2",
    )
    worker = Worker(tmp_path / "worker.log", env=env).start()
    try:
        before = [f"before-{i}" for i in range(5)]
        enqueue_records_in(url, before)
        wait_for(
            lambda: set(before) <= set(effects(pg, "tablo_fault")),
            timeout=60, what="tasks enqueued before the restart", worker=worker,
        )  # fmt: skip
        log_before_restart = len(worker.log())

        pg.restart(down_for=3.0)

        def outage_errors() -> list[dict]:
            outage_log = worker.log()[log_before_restart:]
            lines = [json.loads(x) for x in outage_log.splitlines() if x.startswith("{")]
            return [x for x in lines if x.get("level") in ("error", "critical", "warning")]

        # The worker has polled a dead connection (down, or dropped by the restart).
        wait_for(outage_errors, timeout=30, what="the outage in the worker's log", worker=worker)

        after = [f"after-{i}" for i in range(5)]
        enqueue_records_in(url, after)
        wait_for(
            lambda: set(after) <= set(effects(pg, "tablo_fault")),
            timeout=90, what="tasks enqueued after the restart", worker=worker,
        )  # fmt: skip

        # Still the same process: it reconnected by itself, it did not crash and restart.
        assert worker.process is not None
        assert worker.process.poll() is None
        outage_log = worker.log()[log_before_restart:]
        errors = outage_errors()
        assert errors, f"no log line says the database went away:\n{outage_log[-4000:]}"
        # A clear line: it names the database problem, not only a bare traceback.
        assert any(
            "connect" in json.dumps(x).lower() or "database" in json.dumps(x).lower()
            for x in errors
        ), outage_log[-4000:]
        # No crash loop: a bounded number of error lines during a few seconds of outage.
        assert len(errors) < 200, f"{len(errors)} error lines in a few seconds"
    finally:
        worker.stop()
    assert worker.process.returncode == 0, worker.log()[-4000:]
    # The run counts (the Overview's, /metrics') lost none of the runs around the outage.
    assert counted_successes(pg, "tablo_fault", RECORD) == sum(
        effects(pg, "tablo_fault").values()
    ), worker.log()[-4000:]


def counted_successes(pg: PgCluster, db: str, func: str) -> int:
    with pg.connect(db) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(succeeded), 0) FROM jobs_jobstat WHERE span = %s AND func = %s",
            [JobStat.Span.TOTAL.value, func],
        ).fetchone()
    return int(row[0])
