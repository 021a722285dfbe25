"""The delivery contract on real qcluster processes: a claim belongs to a live node.

Default ``Q_TIMEOUT`` and ``bulk`` throughout: recovery never waits on a lock time.
Each task applies an effect counted per key (``rel_effect``), so "none lost" and
"applied twice" are read from the effects, not from the broker's own tables.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.scheduler import scheduler
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from jobs.metrics import exposition
from jobs.models import Job, JobAttempt, WorkerNode
from jobs.schedules import schedule_run_now
from tests.support import jobtable
from tests.support.runtime import log_events

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORD = "tests.reliability.jobs.record"
# The contract: a dead node's tasks start again within this long.
RECOVERY_BOUND = 30.0


def wait_for(predicate, *, timeout: float, what: str, workers=()) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited:\n{worker.log()[-4000:]}")
        time.sleep(0.05)
    tails = "\n".join(w.log()[-3000:] for w in workers)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def node_of(worker) -> WorkerNode:
    return WorkerNode.objects.get(pid=worker.pid, stopped_at__isnull=True, dead_at__isnull=True)


def enqueue_records(count: int, *, sleep: float) -> dict[str, str]:
    """task id -> key, committed at once."""
    with transaction.atomic():
        return {async_task(RECORD, f"k{i:04d}", sleep): f"k{i:04d}" for i in range(count)}


def run_a_while(victim, effects, rng: random.Random) -> None:
    """Until a random number of further effects is applied (the moment of the kill)."""
    goal = len(effects.all()) + rng.randint(40, 200)
    wait_for(lambda: len(effects.all()) >= goal, timeout=90, what="progress", workers=[victim])


def test_kill_9_three_times_loses_nothing_and_the_restart_takes_over_at_once(
    worker_factory, effects
) -> None:
    rng = random.Random(os.getpid())
    keys = enqueue_records(1000, sleep=0.01)
    recoveries, held_keys, started_keys, held_at_kills = [], set(), set(), 0
    restarted = None
    for _ in range(3):
        victim = restarted or worker_factory()
        run_a_while(victim, effects, rng)
        node = node_of(victim)
        victim.kill()
        held = jobtable.held(node.id)
        held_started = jobtable.held(node.id, started=True)
        # Only the workload's tasks: the node may also hold a heartbeat or a scheduled job.
        # A quick task that ran and was not finished yet is held unstarted (never marked):
        # it may run again too.
        held_keys |= {keys[t] for t in jobtable.task_ids(held) if t in keys}
        started_keys |= {t for t in jobtable.task_ids(held_started) if t in keys}
        started = time.monotonic()
        restarted = worker_factory()
        wait_for(
            lambda held=held: jobtable.started_again(held),
            timeout=60,
            what="held tasks",
            workers=[restarted],
        )
        recoveries.append(time.monotonic() - started)
        assert WorkerNode.objects.get(id=node.id).dead_at is not None
        lost = JobAttempt.objects.filter(error_type="WorkerLost", task_id__in=keys).count()
        assert lost >= len(started_keys)  # each marked start lost is one WorkerLost
        # A kill may fall between a finish and the next claim, with nothing held.
        held_at_kills += len(held)
    assert held_at_kills > 0  # the kills did take tasks from the nodes

    wait_for(
        lambda: len(effects.all()) == len(keys),
        timeout=180,
        what="every effect",
        workers=[restarted],
    )
    runs = effects.all()
    twice = {key for key, n in runs.items() if n > 1}
    print("kill -9 x3 restart: "
          f"recoveries={[f'{r:.1f}s' for r in recoveries]} "
          f"held={len(held_keys)} applied_twice={len(twice)}")  # fmt: skip
    assert set(runs) == set(keys.values())  # none lost
    assert twice <= held_keys  # only tasks the killed node held can run twice
    assert all(r < RECOVERY_BOUND for r in recoveries)
    assert restarted.stop() == 0


def test_a_live_peer_takes_over_a_killed_node_and_healthz_shows_both(
    worker_factory, effects, client
) -> None:
    rng = random.Random(os.getpid() + 1)
    # Slower tasks: two nodes must not finish everything before the third kill.
    keys = enqueue_records(1000, sleep=0.08)
    peer = worker_factory()
    held_keys, recoveries = set(), []
    for _ in range(3):
        victim = worker_factory()
        run_a_while(victim, effects, rng)
        node, peer_node = node_of(victim), node_of(peer)
        listed = {n["id"]: n for n in client.get("/healthz").json()["nodes"]}
        assert listed[node.id]["status"] == listed[peer_node.id]["status"] == "ok"
        assert listed[node.id]["pid"] == victim.pid

        victim.kill()
        held = jobtable.held(node.id)
        # Only the workload's tasks: the node may also hold a heartbeat or a scheduled job.
        # A quick task that ran and was not finished yet is held unstarted (never marked):
        # it may run again too.
        held_keys |= {keys[t] for t in jobtable.task_ids(held) if t in keys}
        started = time.monotonic()
        wait_for(
            lambda held=held: jobtable.started_again(held),
            timeout=60,
            what="held tasks",
            workers=[peer],
        )
        recoveries.append(time.monotonic() - started)

        body = client.get("/healthz").json()
        listed = {n["id"]: n for n in body["nodes"]}
        assert listed[node.id]["status"] == "dead"
        assert listed[node.id]["tasks_handed_out_at_death"] == len(held)
        assert body["status"] == "degraded"  # a node died holding tasks

    wait_for(
        lambda: len(effects.all()) == len(keys), timeout=180, what="every effect", workers=[peer]
    )
    runs = effects.all()
    twice = {key for key, n in runs.items() if n > 1}
    print("kill -9 x3 peer: "
          f"recoveries={[f'{r:.1f}s' for r in recoveries]} "
          f"held={len(held_keys)} applied_twice={len(twice)}")  # fmt: skip
    assert set(runs) == set(keys.values())
    assert twice <= held_keys
    assert all(r < RECOVERY_BOUND for r in recoveries)
    assert peer.stop() == 0


def test_a_slow_monitor_never_lets_a_task_run_twice(worker_factory, effects, tmp_path) -> None:
    # Each failure costs the monitor 0.4 s: with 60 tasks failing twice, results
    # wait ~50 s behind the workers, far beyond Q_TIMEOUT.
    markers = tmp_path / "markers"
    markers.mkdir()
    with transaction.atomic():
        ids = {async_task("tests.support.delivery.fails_twice", f"t{i:02d}", str(markers)): i
               for i in range(60)}  # fmt: skip
    worker = worker_factory(Q_TIMEOUT="5")

    wait_for(lambda: len(effects.all()) == 60, timeout=240, what="every effect", workers=[worker])
    wait_for(lambda: not Job.objects.filter(task_id__in=ids).exists(), timeout=60,
             what="an empty queue", workers=[worker])  # fmt: skip

    assert set(effects.all().values()) == {1}  # each success applied exactly once
    assert len(list(markers.iterdir())) == 120  # two failed runs each, no more
    assert not JobAttempt.objects.filter(error_type="WorkerLost").exists()
    assert worker.stop() == 0


def test_sigterm_hands_back_the_tasks_that_had_not_started(worker_factory, effects) -> None:
    keys = enqueue_records(200, sleep=0.3)
    worker = worker_factory(Q_WORKERS="2")
    wait_for(lambda: len(effects.all()) >= 4, timeout=60, what="some progress", workers=[worker])

    assert worker.stop(signal.SIGTERM, timeout=60) == 0

    runs = effects.all()
    # Every claimed task either ran to completion or is ready again, no attempt used
    # (the node's start-up also queued its scheduled jobs: only the workload counts).
    assert jobtable.waiting_of(keys) + len(runs) == len(keys)
    assert jobtable.ready_attempts(keys) == {0}
    assert not JobAttempt.objects.exists()
    assert set(runs.values()) == {1}
    assert not Job.objects.filter(task_id__in=keys, state=Job.State.RUNNING).exists()
    # The counts the Overview and /metrics show are exact: each worker process wrote
    # its last run counts as it stopped.
    assert counted_successes(RECORD) == len(runs)


def counted_successes(func: str) -> int:
    """Successes of ``func`` as /metrics reports them (every queue)."""
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(exposition().decode())
            for sample in family.samples
            if sample.name == "tablo_tasks_finished_total"
            and sample.labels.get("job") == func
            and sample.labels.get("outcome") == "succeeded"
        )
    )


def test_declared_timeouts_hold_on_the_schedule_paths(worker_factory, tmp_path: Path) -> None:
    Schedule.objects.all().delete()  # only the schedules below fire
    worker = worker_factory(Q_TIMEOUT="2")
    done = tmp_path / "long-done"
    never = tmp_path / "never"
    # An operator-made schedule of a registered job, fired by django-q2's scheduler.
    Schedule.objects.create(
        func="tests.support.delivery.longer_than_q_timeout",
        args=f"(4, {str(done)!r})",
        schedule_type=Schedule.ONCE,
        next_run=timezone.now(),
    )
    scheduler()
    # "Run now" from the admin on a schedule of a job with a short timeout.
    short = Schedule.objects.create(
        func="tests.support.delivery.over_its_own_timeout",
        args=f"({str(never)!r},)",
        schedule_type=Schedule.HOURLY,
        next_run=timezone.now() + timezone.timedelta(hours=1),
    )
    task_id = schedule_run_now(schedule=short)

    # Longer than Q_TIMEOUT (2 s), within its own 20 s: it finishes.
    wait_for(done.exists, timeout=60, what="the long job to finish", workers=[worker])
    # Its own 2 s timeout stops the other one, long before its 30 s body ends.
    wait_for(
        lambda: Job.objects.filter(task_id=task_id, state=Job.State.DEAD).exists(),
        timeout=60, what="the overlong job to be stopped", workers=[worker],
    )  # fmt: skip
    attempt = JobAttempt.objects.get(task_id=task_id)
    assert "timeout" in attempt.error_message.lower()
    assert (attempt.finished_at - attempt.started_at).total_seconds() < 10
    assert not never.exists()
    assert worker.stop() == 0


def test_killing_the_main_process_takes_every_child_with_it(worker_factory) -> None:
    worker = worker_factory()

    def children_started() -> list[int]:
        return [e["pid"] for e in log_events(worker.log(), "worker process started")]

    wait_for(lambda: len(children_started()) == 2, timeout=30, what="the node's workers")
    children = children_started()

    os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait()

    def all_gone() -> bool:
        for pid in children:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                return False
        return True

    wait_for(all_gone, timeout=10, what="the cluster's children to die")
