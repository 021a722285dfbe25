"""What jobs.engine.djangoq relies on in django-q2: fails when an upgrade changes it."""

from __future__ import annotations

import inspect

import django_q.monitor

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
