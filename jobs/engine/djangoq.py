"""The django-q2 internals the project relies on, in one place.

django-q2 has no extension point for how the monitor saves a result: its
``monitor`` loop calls the module-level ``django_q.monitor.save_task`` for every
finished task (``save_cached`` calls it too, for a finished ``async_iter``).
``install()`` replaces that function with ``save_task`` below, so that a task of
the database broker is finished in a batch with its acknowledgement
(``jobs.engine.results``). ``run_sync`` is django-q2's own ``sync=True`` path, which
``async_task`` takes and the registry's ``enqueue`` must take the same way.
A failed task reaches the monitor with its exception only as text, which
``parse_result`` reads back. ``tests/jobs/test_djangoq.py`` fails when django-q2
changes what this relies on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import django_q.monitor
from django.utils import timezone
from django_q.brokers import Broker
from django_q.conf import Conf
from django_q.humanhash import uuid as human_uuid
from django_q.signals import pre_enqueue
from django_q.tasks import _sync

from jobs.engine import results


def save_task(task: dict[str, Any], broker: Broker) -> None:
    """django-q2's ``save_task``, for the monitor of a cluster on any broker."""
    try:
        if task.get(results.COMPLETED_IN_WORKER):
            results.announce(task)  # written in the task's own transaction
            return
        ack = task.get("ack_id")
        keep_result = getattr(broker, "keep_result", None)
        if keep_result is not None and isinstance(ack, tuple | list) and len(ack) == 2:
            # The database broker: a success is finished with its acknowledgement,
            # a failure by the failure hook (retry, or a final result once dead).
            if task.get("success"):
                keep_result((int(ack[0]), int(ack[1])), task)
            return
        if task.get("success") and not results.keeps(task) and not task.get("chain"):
            return
        results.save_finished([task], broker)
    except Exception:
        # As django-q2's own: the monitor must go on with the next task.
        django_q.monitor.logger.exception("Could not save task result")


TRACEBACK_HEAD = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s|:$|$)")


@dataclass(frozen=True)
class ParsedError:
    error_type: str
    message: str
    traceback: str


def parse_result(result: Any) -> ParsedError:
    """Split django-q2's ``"message : traceback"`` into type, message and traceback."""
    text = result if isinstance(result, str) else repr(result)
    head = text.find(f" : {TRACEBACK_HEAD}")
    if head == -1:
        if text.startswith(TRACEBACK_HEAD):
            message, tb = "", text
        else:
            return ParsedError(error_type="UnknownError", message=text, traceback="")
    else:
        message, tb = text[:head], text[head + 3 :]
    return ParsedError(
        error_type=_exception_type(tb) or "UnknownError", message=message, traceback=tb
    )


def _exception_type(tb: str) -> str:
    """The raised exception's type: the first unindented line after the last frame."""
    lines = tb.rstrip().splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line[:1].isspace()), default=0)
    for line in lines[last_frame + 1 :]:
        match = _EXCEPTION_LINE.match(line)
        if match:
            return match.group(1)
    for line in reversed(lines):  # unusual layout: any line shaped like "pkg.Type: ..."
        match = _EXCEPTION_LINE.match(line)
        if match and line != TRACEBACK_HEAD:
            return match.group(1)
    return ""


def is_missing_function(task: dict[str, Any], parsed: ParsedError) -> bool:
    """django-q2's worker raises this when ``task["func"]`` cannot be located."""
    return parsed.error_type == "ValueError" and parsed.message == (
        f"Function {task.get('func')} is not defined"
    )


def task_package(
    *,
    func: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    cluster: str | None = None,
    timeout: int | None = None,
) -> dict[str, Any]:
    """The package ``django_q.tasks.async_task`` builds (and sends ``pre_enqueue`` for).

    The registry builds packages itself to insert many in one statement.
    """
    human, task_id = human_uuid()
    task: dict[str, Any] = {"id": task_id, "name": human, "func": func, "args": tuple(args)}
    if cluster:
        task["cluster"] = cluster
    if timeout:
        task["timeout"] = timeout
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    if Conf.SYNC:
        task["sync"] = Conf.SYNC
    if Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    task["kwargs"] = dict(kwargs)
    task["started"] = timezone.now()
    pre_enqueue.send(sender="django_q", task=task)
    return task


def run_sync(payload: str) -> str:
    """Run a signed task package now, in this process, as ``async_task(sync=True)`` does."""
    return str(_sync(payload))


def install() -> None:
    """Route the monitor's result saving through ``save_task`` (idempotent)."""
    django_q.monitor.save_task = save_task
