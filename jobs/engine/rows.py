"""From a django-q2 task package to an unsaved ``Job`` row: the one mapping every
enqueue path uses (``transitions.insert`` and ``insert_many`` write it)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from jobs.engine import specs
from jobs.engine.execute import clean
from jobs.engine.funcs import func_path
from jobs.models import Job


def job_row_from_task(task: dict[str, Any], *, queue: str, payload: str) -> Job:
    """An unsaved ``Job`` for the task package ``task`` signed as ``payload``."""
    func = func_path(task["func"])
    spec = specs.for_func(func)
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
        name=clean(str(task.get("name") or ""))[:139],
        func=clean(func)[:256],
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
