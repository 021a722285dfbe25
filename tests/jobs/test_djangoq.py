"""What jobs.engine.djangoq relies on in django-q2: fails when an upgrade changes it."""

from __future__ import annotations

import inspect
from multiprocessing import Queue, Value
from typing import Any

import django_q.monitor
import django_q.worker
import pytest
from django_q.signals import pre_enqueue
from django_q.tasks import async_task

from jobs.engine import djangoq


def test_the_monitor_saves_through_the_module_level_save_task() -> None:
    loop = inspect.getsource(django_q.monitor.monitor)
    cached = inspect.getsource(django_q.monitor.save_cached)

    assert "save_task(task, broker)" in loop
    assert "save_task(task, broker)" in cached  # a finished async_iter
    # The result is handed over before the acknowledgement that finishes it.
    assert loop.index("save_task(task, broker)") < loop.index("broker.acknowledge(ack_id)")
    assert "def save_task(task, broker: Broker)" in inspect.getsource(django_q.monitor)


def test_the_project_save_task_is_installed() -> None:
    assert django_q.monitor.save_task is djangoq.save_task


def _run_in_a_worker(task: dict[str, Any]) -> dict[str, Any]:
    """What django-q2's own worker hands the monitor for ``task`` (run in this process)."""
    tasks: Queue[Any] = Queue()
    results: Queue[Any] = Queue()
    tasks.put(task)
    tasks.put("STOP")
    django_q.worker.worker(tasks, results, Value("f", -1))
    finished = results.get(timeout=10)
    tasks.close()
    results.close()
    return finished


def _task(func: str, *args: Any) -> dict[str, Any]:
    return {"id": "a" * 32, "name": "probe", "func": func, "args": args, "kwargs": {}}


@pytest.mark.django_db
def test_a_raised_exception_reaches_the_monitor_as_text_parse_result_reads() -> None:
    finished = _run_in_a_worker(_task("json.loads", "{"))

    assert finished["success"] is False
    parsed = djangoq.parse_result(finished["result"])
    assert parsed.error_type == "json.decoder.JSONDecodeError"
    assert parsed.message.startswith("Expecting property name")
    assert parsed.traceback.startswith("Traceback (most recent call last):")


@pytest.mark.django_db
def test_a_function_that_no_longer_exists_is_recognised() -> None:
    finished = _run_in_a_worker(_task("tests.no_such_module.gone"))

    parsed = djangoq.parse_result(finished["result"])
    assert djangoq.is_missing_function(finished, parsed)


@pytest.mark.django_db
def test_the_registry_builds_the_package_async_task_builds(settings: Any) -> None:
    sent: list[dict[str, Any]] = []

    def keep(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
        if task is not None:
            sent.append(dict(task))

    pre_enqueue.connect(keep, dispatch_uid="test_djangoq.keep")
    try:
        async_task("json.dumps", 1, key="v", timeout=30)
        djangoq.task_package(func="json.dumps", args=(1,), kwargs={"key": "v"}, timeout=30)
    finally:
        pre_enqueue.disconnect(dispatch_uid="test_djangoq.keep")

    theirs, ours = sent
    assert set(ours) == set(theirs)
    for key in ("func", "args", "kwargs", "timeout"):
        assert ours[key] == theirs[key]
    assert type(ours["started"]) is type(theirs["started"])
