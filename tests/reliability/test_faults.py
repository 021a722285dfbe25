"""Fault tests on a real qcluster: kill -9, SIGTERM during a long task.

Each task applies an idempotent effect keyed by its argument (``tests.reliability.jobs``),
so "none lost" is checked on the effects, whatever the broker keeps internally.
"""

from __future__ import annotations

import signal
import time

import pytest
from django.db import transaction
from django_q.brokers import get_broker
from django_q.tasks import async_task

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORD = "tests.reliability.jobs.record"
# Small locks so that redelivery after a crash happens within the test.
FAST_LOCKS = {"Q_TIMEOUT": "5", "Q_RETRY": "35", "JOBS_LOCK_MARGIN_SECONDS": "5", "Q_WORKERS": "2"}
LOCK_SECONDS = 35  # the longest of the two lock rules above (django-q2 retry)


def wait_for(predicate, *, timeout: float, what: str, worker=None) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.log()[-4000:]}")
        time.sleep(0.1)
    tail = worker.log()[-4000:] if worker is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def queue_is_empty() -> bool:
    broker = get_broker()
    return (broker.queue_size() or 0) + (broker.lock_size() or 0) == 0


def test_kill_9_of_the_whole_worker_loses_no_task(worker_factory, effects) -> None:
    keys = [f"k{i:03d}" for i in range(500)]
    with transaction.atomic():  # one commit: the queue rows appear at once
        for key in keys:
            async_task(RECORD, key, 0.03)
    worker = worker_factory(**FAST_LOCKS)
    wait_for(lambda: len(effects.all()) >= 40, timeout=60, what="40 tasks done", worker=worker)
    worker.kill()  # SIGKILL to the process group: main process, pusher, workers, monitor
    killed_at = time.monotonic()
    done_at_kill = len(effects.all())
    assert done_at_kill < len(keys), "the worker finished everything before the kill"

    restarted = worker_factory(**FAST_LOCKS)
    wait_for(
        lambda: set(effects.all()) == set(keys),
        timeout=LOCK_SECONDS + 60, what="every task's effect", worker=restarted,
    )  # fmt: skip
    recovered_in = time.monotonic() - killed_at
    wait_for(queue_is_empty, timeout=30, what="an empty queue", worker=restarted)
    runs = effects.all()
    lost = [k for k in keys if runs.get(k, 0) == 0]
    duplicates = sum(n - 1 for n in runs.values())
    print(
        f"kill -9: sent={len(keys)} done_before_kill={done_at_kill} completed={len(runs)} "
        f"lost={len(lost)} applied_twice={duplicates} recovered_in={recovered_in:.1f}s"
    )
    assert lost == []
    # Only tasks held by the killed processes can run twice: at most the claimed batch.
    assert duplicates <= 40
    # Redelivery of what the dead worker held happens once its lock expires.
    assert recovered_in < LOCK_SECONDS + 45
    assert restarted.stop() == 0


def test_sigterm_lets_a_long_task_finish_and_commit(worker_factory, effects) -> None:
    worker = worker_factory(**FAST_LOCKS)
    async_task(RECORD, "long", 4.0)
    wait_for(
        lambda: f"'{RECORD}'" in worker.log() and "processing" in worker.log(),
        timeout=30, what="the long task to start", worker=worker,
    )  # fmt: skip
    assert effects.all() == {}
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM, timeout=60) == 0
    assert time.monotonic() - started < 30
    assert effects.all() == {"long": 1}
    assert queue_is_empty()
