"""The worker's side of a Django task: the function its queue package names.

A ``Runner`` stands for the task at a dotted path: the engine names it by that path
(``Job.func``, results, logs, metrics), pickles it by that path, and calls it with the
task's arguments in a worker process. It runs the task as Django's backends do: the
``task_started`` signal, a ``TaskContext`` with the real attempt number when the task
takes one, the return value normalised to JSON. ``task_finished`` is sent after the
outcome is written (``backend.announce_finished``, on django-q2's ``post_execute``).
"""

from __future__ import annotations

import os
from typing import Any

from django.tasks import TaskContext
from django.tasks.signals import task_started
from django.utils import timezone
from django.utils.json import normalize_json

from jobs.django_tasks import results
from jobs.django_tasks.errors import ReturnValueNotJSON
from jobs.engine import context


class Runner:
    """The callable of a Django task's package (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        module, _, name = path.rpartition(".")
        # What the engine's and django-q2's naming reads: the task's own path.
        self.__module__ = module
        self.__qualname__ = self.__name__ = name

    def __reduce__(self) -> tuple[type[Runner], tuple[str]]:
        return (Runner, (self.path,))

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<Django task {self.path}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Runner) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        run = context.current_run()
        package = run.task
        details = package.get(results.META) or {}
        task = results.task_as_enqueued(self.path, details)
        backend = task.get_backend()
        worker = results.worker_id(run.cluster, run.host, run.pid or os.getpid())
        result = results.running(
            task,
            result_id=run.task_id or "",
            attempt=max(run.attempt, 1),
            worker=worker,
            started_at=timezone.now(),
            package=package,
            backend=backend,
        )
        # task_finished reuses it for a first-attempt success (results.first_success).
        package[results.RUNNING] = result
        task_started.send(sender=type(backend), task_result=result)
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        try:
            value = normalize_json(value)
        except (TypeError, ValueError) as exc:
            raise ReturnValueNotJSON(
                f"the return value of {self.path} cannot be stored as JSON: {exc}"
            ) from exc
        return results.outcome(value, worker=worker, meta=details)
