"""jobs.django_tasks: Django's Tasks contract on Tablo's engine, run by a worker of this process.

The checklist is Django's own backend tests and django-tasks-db's: JSON round trip, aware
``run_after``, priority bounds, queues, module-level functions only, async functions,
signals, ``get_result`` and ``refresh()``; then retries, transactions and uniqueness. A
``Worker`` of this process (``jobs.engine.worker``) claims and runs the tasks, step by
step, as a ``qcluster`` worker process does (tests/jobs/test_django_tasks_worker.py runs
the real one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django_q.models import Task as ResultRow
from django_q.tasks import async_task

from jobs.django_tasks import TabloBackend
from jobs.django_tasks.errors import ReturnValueNotJSON
from jobs.engine import registry
from jobs.engine.worker import Worker
from jobs.models import Job, JobAttempt
from tests.support import django_tasks as tasks

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = tasks.TEST_QUEUE
backend_settings, drain = tasks.backend_settings, tasks.drain


@pytest.fixture(autouse=True)
def _tasks_settings(settings) -> None:
    settings.TASKS = backend_settings()


def on(queue_task: Any) -> Any:
    return queue_task.using(queue_name=QUEUE)


# -- the backend ------------------------------------------------------------------
def test_the_default_backend_is_tablos_with_every_feature() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, TabloBackend)
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_enqueue_writes_one_queue_row_under_the_module_path() -> None:
    result = tasks.add.enqueue(1, 2)
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs) == ([1, 2], {})
    assert result.backend == "default"
    assert result.enqueued_at is not None
    assert timezone.is_aware(result.enqueued_at)
    assert result.started_at is result.finished_at is result.last_attempted_at is None
    assert (result.errors, result.worker_ids) == ([], [])
    job = Job.objects.get(task_id=result.id)
    path = "tests.support.django_tasks.add"
    assert (job.func, job.job_name, job.state) == (path, path, Job.State.QUEUED)
    assert job.queue == "tablo"  # "default" is the site's queue
    assert registry.get(path).path == path


def test_a_result_runs_reads_back_and_refreshes(tasks_worker: Worker) -> None:
    result = on(tasks.add).enqueue(2, 3)
    before = timezone.now()
    drain(tasks_worker)
    assert result.status == TaskResultStatus.READY  # the object itself is a snapshot
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.enqueued_at < before <= result.started_at
    assert result.started_at == result.last_attempted_at <= result.finished_at
    assert len(result.worker_ids) == 1
    assert result.worker_ids[0].endswith(f":{_pid()}")
    assert result.errors == []
    again = tasks.add.get_result(result.id)
    assert (again.status, again.return_value, again.args) == (result.status, 5, [2, 3])
    assert again.task.queue_name == QUEUE  # the task as it was enqueued


def _pid() -> int:
    return os.getpid()


# -- JSON ---------------------------------------------------------------------------
def test_arguments_and_return_value_round_trip_as_json(tasks_worker: Worker) -> None:
    value = {"tuple": (1, 2), "nested": [{"a": None, "b": 1.5}], "text": "é", "bytes": b"x"}
    result = on(tasks.echo).enqueue(value)
    normalised = {"tuple": [1, 2], "nested": [{"a": None, "b": 1.5}], "text": "é", "bytes": "x"}
    assert result.args == [normalised]
    drain(tasks_worker)
    result.refresh()
    assert result.return_value == normalised
    assert default_task_backend.get_result(result.id).args == [normalised]


def test_arguments_that_are_not_json_are_refused_and_nothing_is_queued() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.echo.enqueue(datetime(2026, 1, 1, tzinfo=timezone.UTC))
    assert not Job.objects.exists()


def test_a_return_value_that_is_not_json_fails_once_without_retry(tasks_worker: Worker) -> None:
    result = on(tasks.returns_a_set).enqueue()
    drain(tasks_worker)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ReturnValueNotJSON
    assert "cannot be stored as JSON" in error.traceback
    assert Job.objects.get(task_id=result.id).attempt == 1


# -- run_after, priority, queues --------------------------------------------------------
def test_run_after_must_be_aware() -> None:
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=datetime(2030, 1, 1)).enqueue(1, 2)
    assert not Job.objects.exists()


def test_run_after_delays_the_start(tasks_worker: Worker) -> None:
    when = timezone.now() + timedelta(seconds=1)
    result = on(tasks.add).using(run_after=when).enqueue(1, 1)
    assert Job.objects.get(task_id=result.id).run_at == when
    assert result.task.run_after == when
    assert tasks_worker.claim() == 0  # not due yet
    drain(tasks_worker, until=lambda: not Job.objects.filter(task_id=result.id).exists())
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at >= when
    assert tasks.add.get_result(result.id).task.run_after == when


@pytest.mark.parametrize("priority", [101, -101, 1.5])
def test_priority_outside_djangos_range_is_refused(priority: float) -> None:
    with pytest.raises(InvalidTask, match="priority must be a whole number between -100 and 100"):
        tasks.add.using(priority=priority).enqueue(1, 2)


def test_priority_orders_the_claims(tasks_worker: Worker) -> None:
    low = on(tasks.add).using(priority=-100).enqueue(1, 0)
    high = on(tasks.add).using(priority=100).enqueue(1, 1)
    middle = on(tasks.add).enqueue(1, 2)
    assert Job.objects.get(task_id=high.id).priority == 100
    order: list[str] = []

    def started(sender: Any, task_result: Any, **kwargs: Any) -> None:
        order.append(task_result.id)

    task_started.connect(started, dispatch_uid="test-priority-order")
    try:
        drain(tasks_worker, until=lambda: len(order) == 3)
    finally:
        task_started.disconnect(dispatch_uid="test-priority-order")
    assert order == [high.id, middle.id, low.id]


def test_an_undeclared_queue_is_refused() -> None:
    with pytest.raises(InvalidTask, match="Queue 'reports' is not valid for backend"):
        tasks.add.using(queue_name="reports").enqueue(1, 2)


def test_a_declared_queue_is_a_tablo_queue_of_that_name() -> None:
    result = on(tasks.add).enqueue(1, 2)
    job = Job.objects.get(task_id=result.id)
    assert job.queue == QUEUE


# -- what Django validates ---------------------------------------------------------
def test_only_module_level_functions_are_tasks() -> None:
    def local() -> None:
        return None

    with pytest.raises(InvalidTask, match="module level"):
        task(local)


def test_a_task_taking_context_needs_it_first() -> None:
    with pytest.raises(InvalidTask, match="context"):
        task(takes_context=True)(tasks.add.func)


def test_a_bad_declared_policy_is_refused() -> None:
    with pytest.raises(InvalidTask, match="max_attempts must be a whole number of at least 1"):
        task(max_attempts=0)(tasks.add.func)
    with pytest.raises(InvalidTask, match="backoff must be seconds"):
        task(backoff=[-1])(tasks.add.func)


def test_an_async_function_runs(tasks_worker: Worker) -> None:
    result = on(tasks.async_add).enqueue(20, 22)
    drain(tasks_worker)
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)


def test_enqueue_and_get_result_from_async_code() -> None:
    async def enqueue_and_read() -> tuple[Any, Any]:
        result = await tasks.add.aenqueue(1, 2)
        return result, await tasks.add.aget_result(result.id)

    result, again = async_to_sync(enqueue_and_read)()
    assert (again.id, again.status, again.args) == (result.id, TaskResultStatus.READY, [1, 2])
    assert Job.objects.filter(task_id=result.id).exists()


# -- results ------------------------------------------------------------------------
def test_an_unknown_id_has_no_result() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("0" * 32)


def test_a_tablo_task_is_not_a_django_task_result() -> None:
    task_id = async_task("math.floor", 1.5)
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        default_task_backend.get_result(task_id)


def test_get_result_of_another_task_is_a_mismatch() -> None:
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        tasks.echo.get_result(result.id)


def test_a_running_task_is_running_with_its_worker(tasks_worker: Worker) -> None:
    result = on(tasks.add).enqueue(1, 2)
    assert tasks_worker.claim() == 1
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING
    [worker_id] = result.worker_ids
    assert worker_id == Job.objects.get(task_id=result.id).claimed_by


def test_context_has_the_real_attempt_number(tasks_worker: Worker) -> None:
    result = on(tasks.fails_until).enqueue(3)
    drain(tasks_worker, until=lambda: not Job.objects.filter(task_id=result.id).exists())
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 3)
    assert result.attempts == 3
    assert len(result.worker_ids) == 3
    assert [e.exception_class for e in result.errors] == [RuntimeError, RuntimeError]
    assert "attempt 1 fails on purpose" in result.errors[0].traceback
    assert "attempt 2 fails on purpose" in result.errors[1].traceback
    first = JobAttempt.objects.get(task_id=result.id, attempt=1)
    assert result.started_at == first.started_at < result.last_attempted_at


def test_retries_with_backoff_end_failed_with_every_error(tasks_worker: Worker) -> None:
    result = on(tasks.always_fails).enqueue("disk full")
    dead = Job.objects.filter(task_id=result.id, state=Job.State.DEAD)
    drain(tasks_worker, until=dead.exists)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert len(result.errors) == 3 == result.attempts
    for error in result.errors:
        assert error.exception_class is ValueError
        assert error.traceback.endswith("ValueError: disk full\n")
    history = list(JobAttempt.objects.filter(task_id=result.id).order_by("attempt"))
    # The declared backoff: 0.2 s after the first failure, 0.4 s after the second.
    assert history[1].started_at - history[0].finished_at >= timedelta(seconds=0.2)
    assert history[2].started_at - history[1].finished_at >= timedelta(seconds=0.4)
    assert result.finished_at == history[-1].finished_at
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_a_discarded_dead_task_still_reads_failed(tasks_worker: Worker) -> None:
    result = on(tasks.always_fails).enqueue("gone")
    dead = Job.objects.filter(task_id=result.id, state=Job.State.DEAD)
    drain(tasks_worker, until=dead.exists)
    dead.delete()  # what "discard" does to the row; the history and result stay
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert len(result.errors) == 3
    assert result.args == ["gone"]


# -- signals ------------------------------------------------------------------------
@pytest.fixture
def signals_seen() -> Iterator[list[tuple[str, Any, Any]]]:
    seen: list[tuple[str, Any, Any]] = []

    def receiver(name: str) -> Callable[..., None]:
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            stored = default_task_backend.get_result(task_result.id).status
            seen.append((name, sender, (task_result.status, stored)))

        return receive

    receivers = {
        signal: receiver(name)
        for signal, name in (
            (task_enqueued, "enqueued"),
            (task_started, "started"),
            (task_finished, "finished"),
        )
    }
    for signal, receive in receivers.items():
        signal.connect(receive)
    yield seen
    for signal, receive in receivers.items():
        signal.disconnect(receive)


def test_signals_at_the_moments_django_documents(tasks_worker: Worker, signals_seen: list) -> None:
    on(tasks.add).enqueue(1, 2)
    assert signals_seen == [("enqueued", TabloBackend, (TaskResultStatus.READY,) * 2)]
    drain(tasks_worker, until=lambda: len(signals_seen) == 3)
    assert signals_seen[1:] == [
        ("started", TabloBackend, (TaskResultStatus.RUNNING,) * 2),
        # Sent once the outcome is written: a receiver reads it back.
        ("finished", TabloBackend, (TaskResultStatus.SUCCESSFUL,) * 2),
    ]


def test_each_failed_attempt_finishes_with_the_status_it_leaves(
    tasks_worker: Worker, signals_seen: list
) -> None:
    result = on(tasks.always_fails).enqueue("x")
    drain(tasks_worker, until=Job.objects.filter(task_id=result.id, state="dead").exists)
    finished = [status for name, _, (status, _stored) in signals_seen if name == "finished"]
    assert finished == [TaskResultStatus.READY, TaskResultStatus.READY, TaskResultStatus.FAILED]


# -- transactions and uniqueness ----------------------------------------------------
def test_enqueue_in_a_rolled_back_transaction_leaves_nothing() -> None:
    class Rollback(Exception):
        pass

    seen: list[Any] = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            seen.append(tasks.add.enqueue(1, 2))
            seen.append(tasks.add.get_result(seen[0].id).status)
            raise Rollback

    with pytest.raises(Rollback):
        enqueue_then_fail()
    result, status_inside = seen
    assert status_inside == TaskResultStatus.READY
    assert not Job.objects.exists()
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)


def test_enqueue_in_a_committed_transaction_is_queued_with_it() -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(1, 2)
    assert Job.objects.filter(task_id=result.id).exists()


def test_a_unique_task_is_queued_once_while_active(tasks_worker: Worker) -> None:
    first = on(tasks.unique_echo).enqueue("k")
    second = on(tasks.unique_echo).enqueue("k")
    other = on(tasks.unique_echo).enqueue("other")
    assert second.id == first.id != other.id
    assert Job.objects.count() == 2
    drain(tasks_worker)
    assert on(tasks.unique_echo).enqueue("k").id != first.id  # done: a new one


# -- policy from OPTIONS --------------------------------------------------------------
def test_options_set_defaults_and_a_per_path_table_wins(settings) -> None:
    path = "tests.support.django_tasks.always_fails"
    settings.TASKS = backend_settings(
        max_attempts=7,
        timeout=30,
        tasks={path: {"max_attempts": 2, "backoff": 5, "unique": True}},
    )
    tasks.add.using(priority=1)  # validated by the new backend: registered with its policy
    tasks.always_fails.using(priority=1)
    add = registry.get("tests.support.django_tasks.add")
    assert (add.max_attempts, add.timeout, add.backoff, add.unique) == (7, 30, None, None)
    fails = registry.get(path)
    # The table wins over @task(max_attempts=3, backoff=[0.2, 0.4]); the default timeout stays.
    assert (fails.max_attempts, fails.timeout) == (2, 30)
    assert fails.backoff is not None
    assert fails.backoff(1) == fails.backoff(9) == 5
    assert fails.unique is not None
    assert fails.unique("a") != fails.unique("b")
    result = tasks.always_fails.enqueue("a")
    assert Job.objects.get(task_id=result.id).max_attempts == 2


def test_bad_options_are_refused_at_enqueue(settings) -> None:
    settings.TASKS = backend_settings(max_attempts="many")
    with pytest.raises(InvalidTaskBackend, match="max_attempts must be a whole number"):
        tasks.add.enqueue(1, 2)
    assert not ResultRow.objects.exists()
    assert not Job.objects.exists()


def test_djangos_log_lines_follow_the_worker_policy(
    tasks_worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    # JOBS_LOG_SUCCESSES is off: starts and successes are not logged, a FAILED task is.
    on(tasks.add).enqueue(1, 2)
    failing = on(tasks.returns_a_set).enqueue()
    drain(tasks_worker, until=Job.objects.filter(task_id=failing.id, state="dead").exists)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "django.tasks"]
    failed = f"Task id={failing.id} path={failing.task.module_path} state=FAILED"
    assert lines == [("ERROR", failed)]
