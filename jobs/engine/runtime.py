"""The worker runtime: what happens around every task run (jobs.apps connects it).

django-q2 sends ``pre_execute`` and ``post_execute_in_worker`` in the worker
process, around the call of the task's function. The runtime uses them to:

* stamp the task package with the attempt number (from the broker's ack id),
  the start time and the worker's identity; the package travels on to the
  monitor, where the failure hook (``jobs.failures``) reads these fields;
* set ``jobs.engine.context.current_task_id`` (``jobs.engine.progress`` needs it) and bind the
  task's context to structlog, so every line the job logs carries it;
* log ``task finished`` (with its duration) once per run, for every job, and
  ``task started`` at DEBUG level;
* note the running task in the node's in-flight slots (``jobs.engine.inflight``), so a
  worker process that dies mid-task does not strand its claim.

django-q2 sends these signals with ``send``, not ``send_robust``: a receiver
that raises would kill the worker. Every receiver here is wrapped and logs its
own errors instead.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog
from django.utils import timezone
from django_q.conf import Conf
from django_q.signals import (
    post_execute,
    post_execute_in_worker,
    pre_enqueue,
    pre_execute,
)

from jobs.engine import completion, counters, inflight, registry, stats
from jobs.engine.context import current_task_id
from jobs.engine.funcs import func_path

logger = structlog.stdlib.get_logger("jobs.engine.runtime")
_stdlib_logger = logging.getLogger("jobs.engine.runtime")

# Keys bound to structlog's contextvars for the duration of one task run.
CONTEXT_KEYS = ("task_id", "job", "attempt", "cluster", "pid")


@dataclass(frozen=True)
class Run:
    """The task this process is running, as the runtime stamped it."""

    task_id: str | None
    attempt: int
    cluster: str
    host: str
    pid: int


_current_run: ContextVar[Run | None] = ContextVar("jobs_runtime_current_run", default=None)


def current_run() -> Run:
    """The running task's identity; outside a worker task, this process with no task."""
    run = _current_run.get()
    if run is not None:
        return run
    identity = worker_identity()
    return Run(task_id=None, attempt=0, **identity)


# Monotonic start of the task running in this process (one task at a time per worker).
_started_monotonic: float | None = None


def worker_identity() -> dict[str, Any]:
    """The cluster, host and pid of this worker process."""
    return {"cluster": Conf.CLUSTER_NAME or "", "host": _hostname(os.getpid()), "pid": os.getpid()}


@functools.cache
def _hostname(pid: int) -> str:
    # Asked once per process (keyed by pid: a forked worker asks again), not per task.
    return socket.gethostname()


def attempt_from_ack_id(ack_id: Any) -> int:
    """The attempt number carried by the broker's ack id.

    Both project brokers hand out ``(task key, attempt)``; django-q2's own brokers
    have no attempt count, and a run is the first.
    """
    if isinstance(ack_id, list | tuple) and len(ack_id) == 2:
        try:
            return max(int(ack_id[1]), 1)
        except (TypeError, ValueError):
            return 1
    return 1


def job_name_for(func: Any) -> str:
    """The registry name of the task's function, else its dotted path."""
    path = func_path(func)
    spec = registry.for_func(path)
    return spec.name if spec is not None else path


def _never_raise(receiver: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(receiver)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            receiver(*args, **kwargs)
        except Exception:
            # A raising receiver would take the worker process down with it.
            logger.exception("worker runtime receiver failed", receiver=receiver.__name__)

    return wrapper


@_never_raise
def on_pre_execute(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    global _started_monotonic
    if task is None:
        return
    identity = worker_identity()
    ack_id = task.get("ack_id")
    task["attempt"] = attempt_from_ack_id(ack_id)
    if isinstance(ack_id, list | tuple) and len(ack_id) == 2:
        inflight.started(int(ack_id[0]), task["attempt"])
        # django-q2's monitor pops "ack_id" before the failure hook sees the task.
        task["claim"] = (int(ack_id[0]), task["attempt"])
        if registry.uses_job_table():
            completion.current_claim.set(
                completion.Claim(
                    row_id=int(ack_id[0]),
                    attempt=task["attempt"],
                    alias=Conf.ORM if isinstance(Conf.ORM, str) else "default",
                    task=task,
                )
            )
    task["started_at"] = timezone.now()
    task["worker"] = identity
    _started_monotonic = time.monotonic()
    current_task_id.set(str(task.get("id") or "") or None)
    _current_run.set(Run(task_id=current_task_id.get(), attempt=task["attempt"], **identity))
    # The previous run's post_execute_in_worker cleared the context.
    structlog.contextvars.bind_contextvars(
        task_id=task.get("id"),
        job=job_name_for(func if func is not None else task.get("func")),
        attempt=task["attempt"],
        cluster=identity["cluster"],
        pid=identity["pid"],
    )
    # One INFO line per run is the finished one (with its duration); this one is for
    # debugging, and not even built when DEBUG is off.
    if _stdlib_logger.isEnabledFor(logging.DEBUG):
        logger.debug("task started", task_name=task.get("name"))


@_never_raise
def on_post_execute_in_worker(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    global _started_monotonic
    try:
        if task is None:
            return
        duration_ms = None
        if _started_monotonic is not None:
            duration_ms = round((time.monotonic() - _started_monotonic) * 1000, 1)
        # In sync mode a failure is signalled before "success" is set (the error re-raises).
        success = bool(task.get("success", False))
        log = logger.info if success else logger.warning
        log("task finished", duration_ms=duration_ms, success=success)
    finally:
        inflight.finished()
        completion.current_claim.set(None)
        _started_monotonic = None
        current_task_id.set(None)
        _current_run.set(None)
        structlog.contextvars.clear_contextvars()


def is_cluster_worker() -> bool:
    """True in a worker forked by a qcluster; False for sync runs in the caller's process."""
    # django-q2's sync mode calls worker() inline and sends post_spawn too: a
    # heartbeat enqueued there would run inline and spawn the next one.
    return not Conf.SYNC and multiprocessing.parent_process() is not None


def connect_signals() -> None:
    """Connect the runtime's django-q2 signal receivers (idempotent)."""
    pre_enqueue.connect(
        registry.apply_declared_options, dispatch_uid="jobs.engine.registry.apply_declared_options"
    )
    post_execute.connect(counters.on_post_execute, dispatch_uid="jobs.engine.counters.post_execute")
    post_execute.connect(stats.on_post_execute, dispatch_uid="jobs.engine.stats.post_execute")
    pre_execute.connect(on_pre_execute, dispatch_uid="jobs.engine.runtime.pre_execute")
    post_execute_in_worker.connect(
        on_post_execute_in_worker, dispatch_uid="jobs.engine.runtime.post_execute_in_worker"
    )
