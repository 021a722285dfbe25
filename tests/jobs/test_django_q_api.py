"""django-q2's documented API against a real ``qcluster`` on the default settings.

Each behaviour goes through django-q2's public functions and models and asserts
the return values its documentation gives. Where the project differs on purpose
(results of retried tasks, a chain that stops at a dead link), the README says so
and the test pins it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db.models import Q
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Failure, Schedule, Success, Task
from django_q.scheduler import scheduler
from django_q.tasks import (
    AsyncTask,
    Chain,
    Iter,
    async_chain,
    async_iter,
    async_task,
    count_group,
    delete_group,
    fetch,
    fetch_group,
    queue_size,
    result,
    result_group,
    schedule,
)

from jobs.models import Job, WorkerNode
from tests.support.cluster import BASE_DIR, Worker, worker_env
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    # One pytest-xdist process runs the module: its tests share one cluster.
    pytest.mark.xdist_group("django-q-api"),
]

WAIT_MS = 20_000
JOBS = "tests.support.api_jobs"


@pytest.fixture(scope="module")
def module_api_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("django-q-api") / "api.jsonl"


@pytest.fixture(scope="module")
def module_cluster(django_db_setup, django_db_blocker, tmp_path_factory, module_api_log: Path):
    """One real cluster for the module's tests; the database is left as a test leaves it.

    Each test's flush takes the node's row too: its next beat writes it again (the
    node's processes carry its id), so the cluster beats often here.
    """
    log = tmp_path_factory.mktemp("django-q-api-worker") / "worker.log"
    env = worker_env(
        API_TEST_LOG=str(module_api_log),
        JOBS_BACKOFF_SCALE="0.01",
        JOBS_NODE_HEARTBEAT_SECONDS="0.2",
    )
    with django_db_blocker.unblock():
        # The cache table outlives a flush: no statistics of an earlier cluster.
        cache.clear()
        worker = Worker(log, env=env).start()
        try:
            yield worker
        finally:
            exit_code = worker.stop()
            # What the cluster wrote after the last test's flush goes too.
            call_command("flush", verbosity=0, interactive=False)
    assert exit_code == 0, worker.log()[-4000:]


@pytest.fixture
def api_log(module_api_log: Path) -> Path:
    """The hooks and links of this test only."""
    module_api_log.write_text("")
    return module_api_log


@pytest.fixture
def cluster(module_cluster: Worker, api_log: Path):
    """The module's cluster, once its node is registered again after the last flush.

    At the end the test's ready tasks are run and finished before the flush: the flush's
    TRUNCATE of every table would deadlock with a finish still writing to two of them.
    """
    module_cluster.wait_until(
        lambda: WorkerNode.objects.filter(
            pid=module_cluster.pid, dead_at__isnull=True, stopped_at__isnull=True
        ).exists(),
        timeout=30,
        what="the cluster's node",
    )
    yield module_cluster

    def settled() -> bool:
        ready = Q(state__in=Job.CLAIMABLE_STATES, run_at__lte=timezone.now())
        return not Job.objects.filter(ready | Q(state=Job.State.RUNNING)).exists()

    module_cluster.wait_until(
        settled,
        timeout=30,
        what="the test's ready tasks finished",
    )


def records(path: Path, kind: str) -> list[dict]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [line for line in lines if line["kind"] == kind]


def test_results_fetch_and_hooks_once_per_finished_task(cluster, api_log: Path, tmp_path) -> None:
    ok = async_task(f"{JOBS}.add", 2, 3, hook=f"{JOBS}.hook", task_name="two-plus-three")
    with_options = async_task(f"{JOBS}.add", 4, 4, q_options={"hook": f"{JOBS}.hook"})
    retried = async_task(
        "tests.reliability.jobs.fail_once", str(tmp_path / "marker"), hook=f"{JOBS}.hook"
    )
    dead = async_task(f"{JOBS}.gives_up", hook=f"{JOBS}.hook")

    assert result(ok, wait=WAIT_MS) == 5
    assert result("two-plus-three") == 5  # by name
    assert result(with_options, wait=WAIT_MS) == 8
    # As django-q2 documents: a failed attempt is the task's result until a later
    # attempt succeeds and replaces it.
    cluster.wait_until(
        lambda: Task.objects.filter(id=retried).exists(), timeout=30, what="a first result"
    )
    cluster.wait_until(
        lambda: fetch(retried).success, timeout=30, what="the retry to replace the failure"
    )
    assert result(retried) == "ok"
    task = fetch(ok)
    assert isinstance(task, Task)
    assert (task.success, task.func, task.args, task.result) == (True, f"{JOBS}.add", (2, 3), 5)
    assert task.stopped >= task.started
    assert fetch("two-plus-three").id == ok
    assert Success.objects.filter(id=ok).exists()

    # A task that gives up is finished: a Failure result and one hook call.
    cluster.wait_until(
        lambda: Failure.objects.filter(id=dead).exists(), timeout=30, what="the Failure row"
    )
    failure = fetch(dead)
    assert failure.success is False
    assert "no point in retrying" in result(dead)
    assert Job.objects.get(task_id=dead).state == Job.State.DEAD

    def hooked() -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        for line in records(api_log, "hook"):
            found.setdefault(line["id"], []).append(line)
        return found

    cluster.wait_until(
        lambda: sum(len(v) for v in hooked().values()) == 5, timeout=30, what="five hooks"
    )
    calls = hooked()
    # Once per finished attempt, with the Task: a retried task's failed attempt, then its success.
    assert {key: len(value) for key, value in calls.items()} == {
        ok: 1,
        with_options: 1,
        retried: 2,
        dead: 1,
    }
    assert calls[ok][0] == {"kind": "hook", "id": ok, "success": True, "result": 5, "type": "Task"}
    assert [call["success"] for call in calls[retried]] == [False, True]
    assert calls[dead][0]["success"] is False
    assert fetch(retried).attempt_count == 2


def test_groups_iter_and_cached_results(cluster) -> None:
    for n in range(3):
        async_task(f"{JOBS}.add", n, 10, group="tens")

    assert sorted(result_group("tens", count=3, wait=WAIT_MS)) == [10, 11, 12]
    assert count_group("tens") == 3
    assert count_group("tens", failures=True) == 0
    assert sorted(t.result for t in fetch_group("tens")) == [10, 11, 12]
    delete_group("tens", tasks=True)
    assert count_group("tens") == 0

    iter_id = async_iter(f"{JOBS}.add", [(1, 2), (3, 4), (5, 6)])
    assert sorted(result(iter_id, wait=WAIT_MS)) == [3, 7, 11]
    it = Iter(f"{JOBS}.add", args=[(1, 1), (2, 2)])
    it.run()
    assert sorted(it.result(wait=WAIT_MS)) == [2, 4]

    cached_id = async_task(f"{JOBS}.add", 20, 22, cached=True)
    assert result(cached_id, wait=WAIT_MS, cached=True) == 42
    assert not Task.objects.filter(id=cached_id).exists()  # cached: in the cache only
    cached_group = "cached-group"
    members = [async_task(f"{JOBS}.add", n, 1, group=cached_group, cached=True) for n in (0, 1)]
    # The group is read once each member's result is there (each is stored before it
    # is listed in its group).
    assert sorted(result(m, wait=WAIT_MS, cached=True) for m in members) == [1, 2]
    assert sorted(result_group(cached_group, count=2, wait=WAIT_MS, cached=True)) == [1, 2]
    assert count_group(cached_group, cached=True) == 2


def test_every_chain_link_runs_in_order_and_a_dead_link_stops_it(cluster, api_log) -> None:
    chain_group = async_chain(
        [(f"{JOBS}.link", ("a",)), (f"{JOBS}.link", ("b",)), (f"{JOBS}.link", ("c",))]
    )
    assert result_group(chain_group, count=3, wait=WAIT_MS) is not None
    chain = Chain(cached=False)
    chain.append(f"{JOBS}.link", "d")
    chain.append(f"{JOBS}.link", "e")
    chain.run()
    assert sorted(chain.result(wait=WAIT_MS)) == ["d", "e"]  # newest first, as django-q2 orders
    assert chain.length() == 2
    cluster.wait_until(
        lambda: [r["name"] for r in records(api_log, "link")] == ["a", "b", "c", "d", "e"],
        timeout=30,
        what="links a-e in order",
    )

    stopped = async_chain(
        [
            (f"{JOBS}.link", ("x",)),
            (f"{JOBS}.link", ("y",), {"fail": True}),
            (f"{JOBS}.link", ("z",)),
        ]
    )
    cluster.wait_until(
        lambda: count_group(stopped, failures=True) == 1, timeout=30, what="the dead link"
    )
    # The next link is enqueued only when a link succeeds: with y dead, z has no row.
    names = [r["name"] for r in records(api_log, "link")]
    assert names[-2:] == ["x", "y"]
    assert "z" not in names
    assert count_group(stopped) == 2  # x succeeded, y failed
    assert list(result_group(stopped)) == ["x"]
    assert not Job.objects.filter(func=f"{JOBS}.link").exclude(state=Job.State.DEAD).exists()
    assert "chain stopped" in cluster.log()


def test_async_task_class_sync_schedules_and_the_successful_tasks_page(
    cluster, admin_client: Client
) -> None:
    task = AsyncTask(f"{JOBS}.add", 1, 1)
    task.run()
    assert task.result(wait=WAIT_MS) == 2
    assert task.fetch().success is True

    sync_id = async_task(f"{JOBS}.add", 5, 5, sync=True)
    assert result(sync_id) == 10  # ran inline, result written at once

    planned = schedule(f"{JOBS}.add", 7, 8, schedule_type=Schedule.HOURLY, next_run=timezone.now())
    # The scheduler pass the cluster runs about every 30 s, taken now.
    scheduler(broker=get_broker())
    planned.refresh_from_db()
    assert result(planned.task, wait=WAIT_MS) == 15
    assert planned.success() is True
    assert planned.task in planned.last_run()
    # The cluster's own scheduled jobs may be queued for a moment meanwhile (a limited
    # one waits for its slot): the queue empties, the scheduled task was taken.
    wait_until(lambda: queue_size() == 0, timeout=WAIT_MS / 1000, what="an empty queue")

    page = admin_client.get(reverse("admin:django_q_success_changelist"))
    assert page.status_code == 200
    assert planned.task in page.content.decode()


def test_qinfo_qmonitor_and_qmemory_read_the_shared_cache(cluster) -> None:
    env = worker_env()

    def command(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # The cluster's statistics reach the shared cache within a guard cycle or two.
    cluster.wait_until(lambda: command("qinfo", "--ids").strip(), timeout=30, what="qinfo --ids")
    [cluster_id] = command("qinfo", "--ids").split()
    short_id = cluster_id[-8:]  # the terminal views print the id's tail
    overview = command("qinfo")
    assert "Clusters1" in overview.replace(" ", "")
    assert "Workers2" in overview.replace(" ", "")
    assert short_id in command("qmonitor", "--run-once")
    assert short_id in command("qmemory", "--run-once")
