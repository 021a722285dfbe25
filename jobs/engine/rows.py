"""From a django-q2 task package to a ``Job`` row: the one mapping every writer uses.

The broker (``jobs.engine.broker``) calls it on ``enqueue``; the registry's batch enqueue
calls it to insert many rows in one statement.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from django_q.utils import get_func_repr

from jobs.engine import registry
from jobs.models import Job


def job_row_from_task(task: dict[str, Any], *, queue: str, payload: str) -> Job:
    """An unsaved ``Job`` for the task package ``task`` signed as ``payload``."""
    func = get_func_repr(task["func"]) or ""
    spec = registry.for_func(func)
    unique_key = None
    if spec is not None and spec.unique is not None:
        unique_key = spec.unique(*task.get("args", ()), **task.get("kwargs", {}))
    timeout = task.get("timeout")
    if timeout is None and spec is not None:
        timeout = spec.timeout
    max_attempts = (
        spec.max_attempts if spec is not None and spec.max_attempts is not None else None
    ) or settings.JOBS_DEFAULT_MAX_ATTEMPTS
    now = timezone.now()
    return Job(
        task_id=task["id"],
        queue=queue,
        name=str(task.get("name") or "")[:139],
        func=func[:256],
        job_name=spec.name if spec is not None else "",
        priority=spec.priority if spec is not None else 0,
        payload=payload,
        state=Job.State.QUEUED,
        run_at=now,
        attempt=0,
        max_attempts=max_attempts,
        timeout=timeout if isinstance(timeout, int) and timeout > 0 else None,
        unique_key=unique_key,
        created_at=now,
    )
