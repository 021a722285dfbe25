"""The project-wide failure hook, on django-q2's ``post_execute`` (monitor process).

django-q2 hands the monitor the finished task dict; the exception's type is
recovered from its ``result`` text (``jobs.engine.djangoq.parse_result``). The hook decides
retry or dead, writes it down (``records.record_failure``) and logs one
``task failed`` event. django-q2 sends signals with ``send``, not
``send_robust``: an exception here would kill the monitor, so none escapes.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from typing import Any

import structlog
from django.conf import settings
from django.utils import timezone
from django_q.signals import post_execute

from jobs.engine import backend, backoff, registry
from jobs.engine.attempts import WorkerInfo
from jobs.engine.djangoq import is_missing_function, parse_result
from jobs.engine.errors import DoNotRetry
from jobs.engine.funcs import func_path
from jobs.models import JobAttempt

logger = structlog.get_logger("jobs.failures")

DO_NOT_RETRY_PATH = f"{DoNotRetry.__module__}.{DoNotRetry.__qualname__}"


def is_do_not_retry(error_type: str) -> bool:
    """``DoNotRetry`` or a subclass of it (types outside builtins are printed dotted).

    The name comes from a traceback, i.e. from whatever the task raised: it is
    resolved only against modules this process has already imported, never by
    importing one (which would run its code). The job's own module, and what it
    imports, is loaded by ``spec_for`` before this is asked.
    """
    if error_type in (DO_NOT_RETRY_PATH, "DoNotRetry"):
        return True
    cls = _loaded_attribute(error_type)
    return isinstance(cls, type) and issubclass(cls, DoNotRetry)


def _loaded_attribute(dotted: str) -> Any:
    """``pkg.mod.Outer.Inner`` looked up in ``sys.modules`` only (None if not there)."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        value: Any = module
        for name in parts[split:]:
            value = getattr(value, name, None)
            if value is None:
                return None
        return value
    return None


def _as_datetime(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def handle_failure(task: dict[str, Any]) -> dict[str, Any]:
    """Record one failed attempt; return the fields of the ``task failed`` event."""
    now = timezone.now()
    task_id = str(task.get("id") or "")
    func = func_path(task.get("func"))
    parsed = parse_result(task.get("result"))
    queue = backend.current()
    job = queue.failure_target(task)
    spec = registry.spec_for(func)
    attempt = int(task.get("attempt") or 0) or (job.attempt if job is not None else 0) or 1
    if job is not None:
        max_attempts = job.max_attempts
    else:
        max_attempts = (spec.max_attempts if spec else None) or settings.JOBS_DEFAULT_MAX_ATTEMPTS
    if job is None:
        give_up = "no queue row"  # sync mode, or the task is gone: nothing of ours to retry
    elif is_do_not_retry(parsed.error_type):
        give_up = "do not retry"
    elif is_missing_function(task, parsed):
        give_up = "function not found"
    elif attempt >= max_attempts:
        give_up = "max attempts reached"
    else:
        give_up = ""
    finished_at = _as_datetime(task.get("stopped")) or now
    # From the end of the attempt: a monitor that lags does not stretch the delay.
    retry_at = backoff.retry_at(attempt, spec=spec, now=finished_at) if not give_up else None
    reported = task.get("worker")
    worker: dict[str, Any] = reported if isinstance(reported, dict) else {}
    current = queue.record_failure(
        claim=backend.claim_of(task),
        task_id=task_id,
        attempt=attempt,
        error_type=parsed.error_type,
        error_message=parsed.message,
        traceback=parsed.traceback,
        started_at=_as_datetime(task.get("started_at")) or _as_datetime(task.get("started")),
        finished_at=finished_at,
        retry_at=retry_at,
        worker=WorkerInfo(
            cluster=str(worker.get("cluster") or ""),
            host=str(worker.get("host") or ""),
            pid=worker.get("pid") if isinstance(worker.get("pid"), int) else None,
        ),
    )
    return {
        "task_id": task_id,
        "task_name": task.get("name"),
        # Like the runtime's task started/finished: the registry name, else the path.
        "job": spec.name if spec is not None else ((job.job_name if job else "") or func),
        "func": func,
        "attempt": attempt,
        "max_attempts": max_attempts,
        "will_retry": retry_at is not None and current,
        "retry_at": retry_at.isoformat() if retry_at is not None else None,
        "gave_up": give_up or None,
        "stale": not current and job is not None,
        "error_type": parsed.error_type,
        "error_message": parsed.message,
        "traceback": parsed.traceback,
    }


def record_success_after_failure(task: dict[str, Any]) -> None:
    """A retried task finally succeeded: close its history with a succeeded attempt.

    Not when its row now belongs to another claim (this node lost the task).
    """
    if not backend.current().succeeded_after_failure(task):
        return
    reported = task.get("worker")
    worker: dict[str, Any] = reported if isinstance(reported, dict) else {}
    func = func_path(task.get("func"))
    spec = registry.for_func(func)
    JobAttempt.objects.create(
        task_id=str(task.get("id") or ""),
        attempt=int(task["attempt"]),
        func=func[:256],
        job_name=spec.name if spec is not None else "",
        succeeded=True,
        started_at=_as_datetime(task.get("started_at")) or _as_datetime(task.get("started")),
        finished_at=_as_datetime(task.get("stopped")) or timezone.now(),
        cluster=str(worker.get("cluster") or "")[:100],
        host=str(worker.get("host") or "")[:255],
        pid=worker.get("pid") if isinstance(worker.get("pid"), int) else None,
    )


def on_post_execute(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    """django-q2 ``post_execute`` receiver. Never raises."""
    if not task or (task.get("success") and (task.get("attempt") or 0) <= 1):
        return
    try:
        if task.get("success"):
            record_success_after_failure(task)
            return
        fields = handle_failure(task)
        logger.error("task failed", **fields)
    except Exception:
        # Even logging may fail (a broken handler): the monitor must live on.
        with contextlib.suppress(Exception):
            logger.exception("failure hook error", task_id=task.get("id"))


def connect_signals() -> None:
    """Connect the failure hook to django-q2's ``post_execute`` (monitor process)."""
    post_execute.connect(on_post_execute, sender="django_q", dispatch_uid="jobs.failures")
