from __future__ import annotations

import logging
import os

import pytest
from django_q.conf import Conf

from jobs.engine import registry, runtime
from jobs.engine.context import current_task_id
from tests.support import runtime as support
from tests.support.runtime import events

pytestmark = pytest.mark.django_db


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def test_a_run_logs_finished_and_at_debug_started_with_the_task_context(caplog_info) -> None:
    caplog_info.set_level(logging.DEBUG)
    with support.conf(SYNC=True):
        task_id = registry.enqueue("tests.echo", "hello", on_commit=False)

    [started] = events(caplog_info, "task started")
    [inside] = events(caplog_info, "inside job")
    [finished] = events(caplog_info, "task finished")
    context = {
        "task_id": task_id,
        "job": "tests.echo",
        "attempt": 1,
        "cluster": Conf.CLUSTER_NAME,
        "pid": os.getpid(),
    }
    for event in (started, inside, finished):
        assert {key: event.get(key) for key in context} == context
    assert inside["value"] == "hello"
    assert finished["success"] is True
    assert isinstance(finished["duration_ms"], float)
    assert finished["duration_ms"] >= 0


def test_context_is_cleared_after_the_run(caplog_info) -> None:
    with support.conf(SYNC=True):
        registry.enqueue("tests.echo", "x", on_commit=False)
    assert current_task_id.get() is None
    runtime.logger.info("after the task")
    [after] = events(caplog_info, "after the task")
    assert "task_id" not in after


def test_a_failed_run_is_logged_finished_without_success(caplog_info) -> None:
    with support.conf(SYNC=True), pytest.raises(RuntimeError, match="boom"):
        registry.enqueue("tests.boom", on_commit=False)
    [finished] = events(caplog_info, "task finished")
    assert finished["success"] is False
    assert finished["job"] == "tests.boom"
    assert current_task_id.get() is None


def test_pre_execute_stamps_attempt_start_and_worker_on_the_package() -> None:
    task = {"id": "abc", "name": "n", "func": support.echo, "ack_id": (17, 3)}
    runtime.on_pre_execute(sender="django_q", func=support.echo, task=task)
    try:
        assert task["attempt"] == 3
        assert task["started_at"] is not None
        assert task["worker"]["pid"] == os.getpid()
        assert task["worker"]["cluster"] == Conf.CLUSTER_NAME
        assert task["worker"]["host"]
        assert current_task_id.get() == "abc"
    finally:
        runtime.on_post_execute_in_worker(sender="django_q", func=support.echo, task=task)
    assert current_task_id.get() is None


@pytest.mark.parametrize(
    ("ack_id", "attempt"),
    [((5, 2), 2), ([5, 4], 4), (12, 1), (None, 1), ("x", 1), ((5, "bad"), 1), ((5, 0), 1)],
)
def test_attempt_comes_from_the_broker_ack_id(ack_id: object, attempt: int) -> None:
    assert runtime.attempt_from_ack_id(ack_id) == attempt


def test_receivers_never_raise(caplog_info, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str) -> None:
        raise RuntimeError("registry exploded")

    monkeypatch.setattr(registry, "for_func", broken)
    task = {"id": "abc", "func": "tests.support.runtime.echo", "ack_id": (1, 1)}
    runtime.on_pre_execute(sender="django_q", func=support.echo, task=task)
    runtime.on_post_execute_in_worker(sender="django_q", func=support.echo, task=None)
    [error] = events(caplog_info, "worker runtime receiver failed")
    assert error["receiver"] == "on_pre_execute"
    assert current_task_id.get() is None


def test_unregistered_functions_are_named_by_path() -> None:
    assert runtime.job_name_for("math.sqrt") == "math.sqrt"
    assert runtime.job_name_for(support.echo) == "tests.echo"


def test_at_info_a_run_logs_one_line(caplog_info) -> None:
    with support.conf(SYNC=True):
        registry.enqueue("tests.echo", "quiet", on_commit=False)

    runtime_lines = [r for r in caplog_info.records if r.name == "jobs.engine.runtime"]
    assert [r.msg["event"] for r in runtime_lines] == ["task finished"]
