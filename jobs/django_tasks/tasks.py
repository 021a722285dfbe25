"""``TabloTask``: Django's ``Task`` with Tablo's retry policy as arguments of ``@task``.

The backend's ``task_class``, so ``@task(max_attempts=5, backoff=[1, 10], timeout=60,
unique=True)`` works wherever ``TASKS`` names ``TabloBackend``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.tasks import Task

from jobs.django_tasks.options import POLICY_KEYS


@dataclass(frozen=True, slots=True, kw_only=True)
class TabloTask(Task[..., Any]):
    max_attempts: int | None = None  # attempts before the task is dead
    timeout: int | None = None  # seconds per attempt
    backoff: float | list[float] | Callable[[int], float] | str | None = None
    unique: bool | Callable[..., str] | str | None = None  # one active task per key

    def declared_policy(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in POLICY_KEYS}


def declared_policy(task: Task[..., Any]) -> dict[str, Any]:
    """The policy a task declares itself (a plain Django ``Task`` declares none)."""
    return task.declared_policy() if isinstance(task, TabloTask) else {}
