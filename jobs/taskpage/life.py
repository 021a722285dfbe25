"""One task's whole life, read for its page: the queue row, every attempt, the result.

A task has a queue row (``Job``) from its enqueue until it succeeds or is discarded,
an attempt row (``JobAttempt``) per finished attempt (failed ones, and the success
that closes a history of failures), and a django-q2 result row (``Task``) when its
result is kept. Any of them makes it known; none, and the page is a 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q
from django_q.models import Task as Result
from django_q.signing import SignedPackage

from jobs.arguments import named_arguments
from jobs.models import Job, JobAttempt, WorkerNode

TASK_ID_MAX = 32  # Job.task_id and django-q2's Task.id
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class Event:
    """A line of the timeline."""

    at: datetime | None
    what: str  # enqueued, claimed, started, attempt failed, ...
    detail: str = ""
    anchor: str = ""  # the attempt's id on the page, for a link


@dataclass(frozen=True)
class Arguments:
    """``rows`` of (name, masked value), or why they cannot be shown."""

    rows: list[tuple[str, Any]] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class TaskLife:
    task_id: str
    state: str  # queued, running, retrying, dead, succeeded, failed, gone
    name: str
    func: str
    job_name: str
    job: Job | None
    node: WorkerNode | None  # the node holding it while claimed or running
    attempts: list[JobAttempt]
    result: Result | None
    arguments: Arguments
    trace_id: str | None
    events: list[Event]

    @property
    def retryable(self) -> bool:
        return self.job is not None and self.job.state in (Job.State.RETRYING, Job.State.DEAD)

    @property
    def cancellable(self) -> bool:
        """Not ended yet: queued, scheduled, retrying or running."""
        return self.job is not None and self.job.state in Job.ACTIVE_STATES

    @property
    def progress_percent(self) -> int | None:
        job = self.job
        if job is None or job.progress_done is None or not job.progress_total:
            return None
        return max(0, min(100, round(100 * job.progress_done / job.progress_total)))


def trace_id(*, job: Job | None, package: dict[str, Any] | None) -> str | None:
    """The trace id of the trace the task was enqueued in, if one was stored with it.

    The one place that reads it: from a W3C ``traceparent`` stored on the queue row
    (a ``traceparent`` field) or in the task package (``trace["traceparent"]``, as
    ``jobs.tracing`` stores it, or a bare key), whichever exists; None when tracing
    stored nothing.
    """
    value = None
    if job is not None and any(f.name == "traceparent" for f in Job._meta.concrete_fields):
        value = getattr(job, "traceparent", None)
    if not value and package:
        # jobs.tracing keeps the W3C context under "trace"; a bare key is read too.
        carrier = package.get("trace")
        value = carrier.get("traceparent") if isinstance(carrier, dict) else None
        value = value or package.get("traceparent")
    match = _TRACEPARENT.fullmatch(str(value or "").strip().lower())
    if match is None or set(match.group(1)) == {"0"}:
        return None
    return match.group(1)


def _package(payload: str) -> tuple[dict[str, Any] | None, str]:
    """The task package signed in ``payload``, or why it cannot be read."""
    try:
        package = SignedPackage.loads(payload)
    except Exception as exc:
        return None, f"Unreadable payload ({type(exc).__name__}: {exc})"
    if not isinstance(package, dict):
        return None, f"Unreadable payload (a {type(package).__name__}, not a task package)"
    return package, ""


def _arguments_of_result(result: Result) -> Arguments:
    try:  # deferred: unpickled here, where a class that no longer exists can be reported
        args, kwargs = result.args, result.kwargs
    except Exception as exc:
        return Arguments(error=f"Unreadable arguments ({type(exc).__name__}: {exc})")
    return _named(result.func, args, kwargs)


def _named(func: Any, args: Any, kwargs: Any) -> Arguments:
    try:
        return Arguments(rows=named_arguments(func, args, kwargs))
    except Exception as exc:  # arguments of an unexpected shape
        return Arguments(error=f"Unreadable arguments ({type(exc).__name__}: {exc})")


def _node_label(*, host: str, pid: int | None, cluster: str) -> str:
    where = f"{host} pid {pid}" if pid else host
    return f"{where} ({cluster})" if cluster else where


def _events(
    job: Job | None, node: WorkerNode | None, attempts: list[JobAttempt], result: Result | None
) -> list[Event]:
    events: list[Event] = []
    if job is not None:
        events.append(Event(job.created_at, "enqueued", f"queue {job.queue}"))
    for attempt in attempts:
        where = _node_label(host=attempt.host, pid=attempt.pid, cluster=attempt.cluster)
        anchor = f"attempt-{attempt.attempt}"
        number = f"attempt {attempt.attempt}"
        if attempt.started_at:
            events.append(Event(attempt.started_at, f"{number} started", where, anchor))
        outcome = "succeeded" if attempt.succeeded else f"failed: {attempt.error_type}"
        events.append(Event(attempt.finished_at, f"{number} {outcome}", where, anchor))
    if job is not None:
        holder = job.claimed_by
        if node is not None:
            holder = _node_label(host=node.host, pid=node.pid, cluster=node.cluster)
            holder += f", worker {job.claimed_by}" if job.claimed_by else ""
        if job.claimed_at:
            events.append(Event(job.claimed_at, "claimed", f"by {holder}"))
        if job.started_at and job.state == Job.State.RUNNING:
            events.append(Event(job.started_at, f"attempt {job.attempt} started", holder))
        if job.state == Job.State.RETRYING:
            events.append(Event(job.run_at, "next attempt due", f"attempt {job.attempt + 1}"))
        if job.state == Job.State.DEAD:
            events.append(Event(job.last_failed_at, "dead", "kept until retried or discarded"))
    if result is not None and not any(a.succeeded for a in attempts):
        what = "finished" if result.success else "failed"
        events.append(Event(result.stopped, what, f"result kept (cluster {result.cluster})"))
    # Undated events (a row written by an older release) go last, in the order found.
    return sorted(events, key=lambda e: (e.at is None, e.at or datetime.min))


def _state(job: Job | None, attempts: list[JobAttempt], result: Result | None) -> str:
    if job is not None:
        return job.state
    if (result is not None and result.success) or any(a.succeeded for a in attempts):
        return "succeeded"
    # No queue row and no success: discarded (or its row pruned with its result).
    return "gone"


def task_life(*, task_id: str) -> TaskLife | None:
    """Everything kept about ``task_id``, or None when nothing is."""
    if not task_id or len(task_id) > TASK_ID_MAX:
        return None
    job = Job.objects.filter(task_id=task_id).first()
    attempts = list(JobAttempt.objects.filter(task_id=task_id).order_by("attempt", "id"))
    # While the queue row is there, its attempts tell more than a failure's result row.
    result = (
        Result.objects.filter(id=task_id).defer("args", "kwargs", "result").first()
        if job is None
        else None
    )
    if job is None and not attempts and result is None:
        return None
    node = None
    if job is not None and job.owner is not None and job.state == Job.State.RUNNING:
        node = WorkerNode.objects.filter(Q(id=job.owner)).first()
    package = None
    if job is not None:
        package, error = _package(job.payload)
        if package is None:
            arguments = Arguments(error=error)
        else:
            arguments = _named(package.get("func"), package.get("args"), package.get("kwargs"))
    elif result is not None:
        arguments = _arguments_of_result(result)
    else:
        arguments = Arguments(error="Not kept: the task's queue row and result are gone.")
    first = job or (attempts[-1] if attempts else None)
    return TaskLife(
        task_id=task_id,
        state=_state(job, attempts, result),
        name=job.name if job is not None else (result.name if result is not None else ""),
        func=first.func if first is not None else (result.func if result is not None else ""),
        job_name=first.job_name if first is not None else "",
        job=job,
        node=node,
        attempts=attempts,
        result=result,
        arguments=arguments,
        trace_id=trace_id(job=job, package=package),
        events=_events(job, node, attempts, result),
    )
