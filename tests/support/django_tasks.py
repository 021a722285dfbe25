"""Django ``@task`` functions the Tasks backend tests enqueue (a worker imports them by path)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.tasks import TaskContext, task

from jobs.engine.worker import Worker
from tests.reliability.jobs import record
from tests.support.waiting import wait_until

# The queue the tests declare in TASKS["default"]["QUEUES"] (TASKS_QUEUES in a worker).
TEST_QUEUE = "djtasks-test"
BACKEND = "jobs.django_tasks.TabloBackend"


def backend_settings(**options: Any) -> dict[str, Any]:
    """``TASKS`` with Tablo's backend, the test queue declared, and ``options``."""
    return {"default": {"BACKEND": BACKEND, "QUEUES": ["default", TEST_QUEUE], "OPTIONS": options}}


def drain(worker: Worker, *, until: Callable[[], bool] = lambda: True, timeout: float = 10) -> None:
    """Claim and run the queue's ready tasks with a worker of this process, finishing each
    batch, until ``until()`` holds (a retry waits for its backoff)."""

    def step() -> bool:
        while worker.claim():
            while worker.claimed:
                worker.run_next()
            worker.finish()
        return until()

    wait_until(step, timeout=timeout, what="the tasks to run", interval=0.02)


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(value: Any) -> Any:
    return value


@task(takes_context=True)
def attempt_number(context: TaskContext, label: str) -> dict[str, Any]:
    return {"attempt": context.attempt, "label": label, "id": context.task_result.id}


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def returns_a_set() -> Any:
    return {1, 2}


@task(max_attempts=3, backoff=[0.2, 0.4])
def always_fails(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True, max_attempts=4, backoff=0.1)
def fails_until(context: TaskContext, succeed_at: int) -> int:
    if context.attempt < succeed_at:
        raise RuntimeError(f"attempt {context.attempt} fails on purpose")
    return context.attempt


@task(unique=True)
def unique_echo(key: str) -> str:
    return key


@task
def touch(path: str) -> str:
    Path(path).write_text("ran")
    return path


@task
def record_effect(key: str, sleep: float = 0.0) -> str:
    """Applies an effect counted per key (tests.reliability.jobs.record)."""
    return record(key, sleep)
