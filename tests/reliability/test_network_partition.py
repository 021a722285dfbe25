"""A worker node on a second host loses its database link for 30 s mid-run.

That is longer than the silence after which a peer declares a node dead (15 s) and
than a query on the cut link takes to fail (DATABASE_TCP_USER_TIMEOUT_MS, 20 s), on
default settings. Its peer declares it dead (no heartbeat) and runs its tasks;
nothing is lost; when the link returns, the node finds out it was declared dead,
rejoins, and the results of the tasks it no longer owns are not recorded. A throwaway
PostgreSQL listens on the veth pair (never the shared server).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.jobs import EFFECT_TABLE_SQL
from tests.reliability.support import clean_env, enqueue_records_in, run_manage
from tests.support.cluster import Worker
from tests.support.netns import SecondHost, second_host
from tests.support.pgcluster import PgCluster
from tests.support.runtime import log_events

pytestmark = pytest.mark.slow

CUT_SECONDS = 30  # at least: the link comes back once the node is declared dead
DECLARED_WITHIN = 55


@pytest.fixture
def remote() -> Iterator[SecondHost]:
    host = second_host()
    yield host
    host.destroy()


@pytest.fixture
def pg(remote: SecondHost) -> Iterator[PgCluster]:
    cluster = PgCluster(listen=f"127.0.0.1,{remote.host_ip}").init().trust(remote.subnet)
    cluster.start()
    yield cluster
    cluster.destroy()


def query(pg: PgCluster, sql: str, *params: object) -> list[tuple]:
    with pg.connect("tablo_part") as conn:
        return conn.execute(sql, params).fetchall()


def wait_for(predicate, *, timeout: float, what: str, workers: list[Worker]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        for worker in workers:
            assert worker.process.poll() is None, worker.log()[-4000:]
        time.sleep(0.2)
    tails = "\n".join(w.log()[-3000:] for w in workers)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def test_a_node_cut_off_from_the_database_loses_its_claims(
    pg: PgCluster, remote: SecondHost, tmp_path: Path
) -> None:
    local_url = pg.create_database("tablo_part")
    remote_url = f"postgres://postgres@{remote.host_ip}:{pg.port}/tablo_part"
    migrated = run_manage("migrate", "--no-input", DATABASE_URL=local_url)
    assert migrated.returncode == 0, migrated.stderr
    with pg.connect("tablo_part") as conn:
        conn.execute(EFFECT_TABLE_SQL)

    def env(url: str) -> dict[str, str]:
        return clean_env(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=url,
                         PYTHONUNBUFFERED="1", LOG_FORMAT="json", Q_WORKERS="2")  # fmt: skip

    here = Worker(tmp_path / "here.log", env=env(local_url)).start()
    there = Worker(tmp_path / "there.log", env=env(remote_url), prefix=remote.prefix).start()
    workers = [here, there]
    try:
        # Half-second tasks: the queue lasts long enough that the remote node still
        # holds claimed tasks when the cut comes, however slowly it started.
        keys = [f"p{i:03d}" for i in range(200)]
        enqueue_records_in(local_url, keys, sleep=0.5)
        [(there_node,)] = query(pg, "SELECT id FROM jobs_workernode WHERE pid = %s", there.pid)
        held_sql = "SELECT count(*) FROM jobs_job WHERE owner = %s AND state = 'running'"
        wait_for(lambda: query(pg, held_sql, there_node)[0][0] > 0, timeout=60,
                 what="the remote node to hold tasks", workers=workers)  # fmt: skip

        remote.cut()
        cut_at = time.monotonic()
        # Progress is counted in runs, not keys: under load every key may have been
        # recorded before the cut, by the tasks the cut node held unfinished.
        runs_sql = "SELECT coalesce(sum(runs), 0) FROM rel_effect"
        runs_at_cut = query(pg, runs_sql)[0][0]
        # What it holds now cannot change until a peer declares it dead. Only what it
        # had started (marked) loses an attempt; the rest goes back as never started.
        lost = set(query(pg, "SELECT task_id, attempt FROM jobs_job WHERE owner = %s "
                             "AND state = 'running' AND started_at IS NOT NULL",
                         there_node))  # fmt: skip
        declared = wait_for(
            lambda: query(pg, "SELECT dead_at IS NOT NULL FROM jobs_workernode WHERE id = %s",
                          there_node)[0][0],
            timeout=DECLARED_WITHIN, what="the cut-off node declared dead", workers=workers,
        )  # fmt: skip
        rescued = query(pg, "SELECT tasks_rescued FROM jobs_workernode WHERE id = %s", there_node)
        assert rescued[0][0] > 0
        assert query(pg, held_sql, there_node)[0][0] == 0
        # Its tasks run here meanwhile.
        wait_for(lambda: query(pg, runs_sql)[0][0] > runs_at_cut,
                 timeout=30, what="progress here during the cut", workers=workers)  # fmt: skip
        time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))  # the rest of the cut
        remote.restore()

        there.wait_until(
            lambda: any("declared dead by a peer" in e.get("event", "")
                        for e in log_events(there.log())),
            timeout=90, what="the node to notice it lost its claims",
        )  # fmt: skip
        wait_for(lambda: len(query(pg, "SELECT key FROM rel_effect")) == len(keys),
                 timeout=180, what="every effect", workers=workers)  # fmt: skip
        wait_for(lambda: query(pg, "SELECT count(*) FROM jobs_job")[0][0] == 0,
                 timeout=60, what="an empty queue", workers=workers)  # fmt: skip

        # Each attempt it lost has one history row, the WorkerLost the rescue wrote:
        # what the cut-off node finished or failed of them later was not recorded.
        history = query(pg, "SELECT task_id, attempt, error_type FROM jobs_jobattempt")
        of_lost = sorted((t, a, kind) for t, a, kind in history if (t, a) in lost)
        assert of_lost == sorted((t, a, "WorkerLost") for t, a in lost)
        print(f"partition: declared dead {declared:.1f}s after the cut, "
              f"{rescued[0][0]} tasks handed out")  # fmt: skip
    finally:
        codes = [w.stop(timeout=60) for w in workers]
    assert codes == [0, 0]
