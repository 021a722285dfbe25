"""From a django-q2 task package to an unsaved ``Job`` row: the one mapping every
enqueue path uses (``transitions.insert`` and ``insert_many`` write it)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_q.conf import Conf
from django_q.humanhash import uuid as human_uuid
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage

from jobs.arguments import search_text
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
    limit_key = rate_key = None
    if spec is not None and spec.concurrency is not None:
        limit_key = _limit_key(spec.name, spec.concurrency_key, task)
    if spec is not None and spec.rate is not None:
        rate_key = _limit_key(spec.name, spec.rate_key, task)
    now = timezone.now()
    expires = task.get("expires")
    batch = task.get("batch")
    # A package may carry its own priority and start time (Django's Tasks do: per
    # enqueue, not per job); the job's declared priority and "now" otherwise.
    priority = task.get("priority")
    if not isinstance(priority, int):
        priority = spec.priority if spec is not None else 0
    run_at = task.get("run_at")
    if not isinstance(run_at, datetime) or timezone.is_naive(run_at):
        run_at = now
    return Job(
        task_id=task["id"],
        queue=queue,
        name=clean(str(task.get("name") or ""))[:139],
        func=clean(func)[:256],
        job_name=spec.name if spec is not None else "",
        priority=priority,
        payload=payload,
        state=Job.State.QUEUED,
        run_at=run_at,
        attempt=0,
        max_attempts=max_attempts,
        timeout=timeout if isinstance(timeout, int) and timeout > 0 else None,
        unique_key=unique_key,
        created_at=now,
        expires_at=expires if isinstance(expires, datetime) else None,
        batch=batch if isinstance(batch, int) else None,
        search_text=search_text(task),
        limit_key=limit_key,
        limit_max=spec.concurrency if limit_key is not None and spec is not None else None,
        rate_key=rate_key,
        rate_max=spec.rate[0] if rate_key is not None and spec and spec.rate else None,
        rate_seconds=spec.rate[1] if rate_key is not None and spec and spec.rate else None,
    )


def callback_row(func: str, argument: dict[str, Any]) -> Job:
    """An unsaved ``Job`` that calls ``func(argument)``: a batch's callback.

    Built as ``async_task`` builds a package, ``pre_enqueue`` included (a registered
    job keeps its declared timeout and queue).
    """
    human, task_id = human_uuid()
    task: dict[str, Any] = {
        "id": task_id,
        "name": human,
        "func": func,
        "args": (argument,),
        "kwargs": {},
        "started": timezone.now(),
    }
    pre_enqueue.send(sender="django_q", task=task)
    queue = task.get("cluster") or Conf.CLUSTER_NAME
    return job_row_from_task(task, queue=queue, payload=SignedPackage.dumps(task))


def _limit_key(name: str, key: Callable[..., str] | None, task: dict[str, Any]) -> str:
    """The job's own limit, or one per key: ``name`` or ``name:key`` (at most 255)."""
    if key is None:
        return name[:255]
    value = f"{name}:{key(*task.get('args', ()), **task.get('kwargs', {}))}"
    if len(value) <= 255:
        return value
    # Two long keys must not become one limit by being cut to the same prefix.
    digest = hashlib.sha256(value.encode()).hexdigest()
    return f"{value[:190]}~{digest}"
