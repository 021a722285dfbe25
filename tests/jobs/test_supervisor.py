"""The supervisor of a real ``qcluster``: dead workers, tasks past their timeout, and the
processes a task starts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from jobs.engine import registry, supervisor
from jobs.engine.worker import STOP_SIGNALS
from jobs.models import Job, JobAttempt
from tests.support.runtime import log_events
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A retry an hour away: each test sees exactly one attempt of its failing task.
SLOW_RETRIES = {"Q_WORKERS": "1", "JOBS_BACKOFF_SCALE": "100", "JOBS_LOG_SUCCESSES": "true"}


def _first_attempt(worker, task_id: str) -> JobAttempt:
    worker.wait_until(
        lambda: JobAttempt.objects.filter(task_id=task_id).exists(),
        timeout=30,
        what="the attempt to be recorded",
    )
    return JobAttempt.objects.get(task_id=task_id)


def _runs_another_task(worker) -> None:
    task_id = registry.enqueue("tests.echo", "after")
    worker.wait_until(
        lambda: any(e["task_id"] == task_id for e in log_events(worker.log(), "task finished")),
        timeout=30,
        what="a task on the replacement worker",
    )


def test_a_worker_that_exits_mid_task_is_replaced_and_the_attempt_says_why(
    worker_factory,
) -> None:
    worker = worker_factory(**SLOW_RETRIES)
    task_id = registry.enqueue("tests.exit_process", 3)

    attempt = _first_attempt(worker, task_id)
    assert attempt.error_type == "WorkerLost"
    assert "its worker process exited with code 3 while running it" in attempt.error_message
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt, job.owner) == (Job.State.RETRYING, 1, None)
    # The supervisor logs it once the attempt is written.
    worker.wait_until(
        lambda: log_events(worker.log(), "worker process died"),
        timeout=10,
        what="the supervisor's log line",
    )
    [died] = log_events(worker.log(), "worker process died")
    # Others of its tasks may be lost with it (a start-up job it ran and had not finished).
    assert died["exitcode"] == 3
    assert task_id in died["tasks_lost"]
    _runs_another_task(worker)


@pytest.mark.parametrize(
    ("signum", "name"), [(signal.SIGKILL, "SIGKILL"), (signal.SIGABRT, "SIGABRT")]
)
def test_a_worker_killed_by_a_signal_is_recorded_with_the_signal(
    worker_factory, signum: int, name: str
) -> None:
    worker = worker_factory(**SLOW_RETRIES)
    task_id = registry.enqueue("tests.kill_own_process", int(signum))

    attempt = _first_attempt(worker, task_id)
    assert attempt.error_type == "WorkerLost"
    assert f"its worker process was killed by {name}" in attempt.error_message
    _runs_another_task(worker)


def test_a_task_that_ignores_its_timeout_is_killed_and_fails_as_timed_out(
    worker_factory, tmp_path: Path
) -> None:
    worker = worker_factory(**SLOW_RETRIES)
    marker = tmp_path / "started"
    task_id = registry.enqueue("tests.ignore_timeout", str(marker))

    attempt = _first_attempt(worker, task_id)
    assert marker.read_text() == "started"
    assert attempt.error_type == "jobs.engine.execute.TaskTimeout"
    assert "ran past its timeout of 1 s and did not stop" in attempt.error_message
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt) == (Job.State.RETRYING, 1)
    _runs_another_task(worker)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_process_a_task_started_dies_with_its_node(worker_factory, tmp_path: Path) -> None:
    worker = worker_factory(Q_WORKERS="1", JOBS_LOG_SUCCESSES="true")
    pidfile = tmp_path / "child.pid"
    registry.enqueue("tests.spawn_child", str(pidfile))
    worker.wait_until(pidfile.exists, timeout=30, what="the task's child process")
    child = int(pidfile.read_text())
    assert _alive(child)

    os.kill(worker.pid, signal.SIGKILL)  # the supervisor alone, as the OOM killer would
    worker.process.wait()
    wait_until(lambda: not _alive(child), timeout=10, what=f"process {child} to die with its node")


def _worker_that_is_sent_sigterm_at_once(*, lifeline, **kwargs) -> None:
    """A new worker process sent SIGTERM before it set its handler, as a supervisor
    stopping right after a fork does; then it sets one, as worker.main does."""
    record = Path(os.environ["TEST_SIGNAL_RECORD"])
    os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: record.write_text("worker"))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os._exit(0)


def test_a_stop_signal_sent_to_a_new_worker_reaches_the_workers_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "handler"
    monkeypatch.setenv("TEST_SIGNAL_RECORD", str(record))
    monkeypatch.setattr(supervisor, "_worker_entry", _worker_that_is_sent_sigterm_at_once)
    node = supervisor.Supervisor(workers=1)
    previous = signal.signal(signal.SIGTERM, lambda *_: record.write_text("supervisor"))
    try:
        seat = node.seats[0]
        node.spawn(seat)
        seat.process.join(10)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seat.process.exitcode == 0
    assert record.read_text() == "worker"  # never the supervisor's handler, in the worker


def _worker_that_waits_for_sigterm(*, lifeline, **kwargs) -> None:
    """Exits 0 on SIGTERM, as a worker stops; 3 when none comes within 20 s (forked with
    the stop signals blocked, it waits for one)."""
    os._exit(0 if signal.sigtimedwait([signal.SIGTERM], 20) is not None else 3)


def test_a_worker_made_while_the_node_stops_is_stopped_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "_worker_entry", _worker_that_waits_for_sigterm)
    node = supervisor.Supervisor(workers=1)
    seat = node.seats[0]
    # SIGTERM handled just before the fork: no worker alive yet for it to signal.
    node.request_stop()
    node.spawn(seat)
    seat.process.join(30)
    assert seat.process.exitcode == 0
