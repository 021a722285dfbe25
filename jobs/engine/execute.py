"""One attempt of a task, run in this process: find its function, call it, say what happened.

Nothing the task does escapes ``run``: any ``BaseException`` (``SystemExit``,
``KeyboardInterrupt``, an exception whose ``__str__`` raises) becomes a failed
``Outcome`` that keeps the exception object, so the retry decision is made from its
type, never from text. Texts are cleaned for the database (no NUL, no lone
surrogates). A timeout is an alarm in this process that raises ``TaskTimeout`` in the
task; the supervisor kills a worker that ignores it.
"""

from __future__ import annotations

import contextlib
import pickle
import pydoc
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import structlog
from django.conf import settings
from django.dispatch import Signal
from django.utils import timezone
from django_q.signals import post_execute_in_worker, pre_execute

from jobs.engine.errors import DoNotRetry, Snooze

logger = structlog.stdlib.get_logger("jobs.engine.execute")


class TaskTimeout(Exception):
    """The attempt ran past its timeout."""


class FunctionNotFound(Exception):
    """The task names a function that does not exist (in this code)."""


class ResultRefused(Exception):
    """The task's return value cannot be kept: it does not pickle, or it is too large."""


@dataclass
class Outcome:
    success: bool
    started_at: datetime
    stopped: datetime
    duration: float  # seconds
    value: Any = None
    error: BaseException | None = None
    error_type: str = ""
    message: str = ""
    traceback: str = ""

    @property
    def final(self) -> str:
        """Why no retry can help ("" when the policy decides)."""
        if isinstance(self.error, DoNotRetry):
            return "do not retry"
        if isinstance(self.error, FunctionNotFound):
            return "function not found"
        return ""

    @property
    def snooze(self) -> float | None:
        """Seconds after which the task asked to run again (raised or returned ``Snooze``)."""
        return self.error.seconds if isinstance(self.error, Snooze) else None

    @property
    def result_text(self) -> str:
        """django-q2's result of a failed task: ``"message : traceback"``."""
        return f"{self.message} : {self.traceback}" if self.traceback else self.message


def clean(text: str) -> str:
    """Text PostgreSQL accepts: NUL bytes and lone surrogates escaped, nothing dropped."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def type_name(exc: BaseException) -> str:
    """``RuntimeError`` for builtins, ``pkg.module.Error`` for everything else."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def message_of(exc: BaseException) -> str:
    """The exception's message, even when its ``__str__`` raises or says nothing."""
    try:
        text = str(exc)
    except BaseException as broken:  # a task's __str__ may raise anything
        return f"<the exception's message could not be read: str() raised {type(broken).__name__}>"
    if isinstance(exc, SystemExit):
        return f"the task called sys.exit({exc.code!r})"
    if not text:
        return f"{type(exc).__name__} (no message)"
    return text


def traceback_of(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException:  # formatting runs the exception's own code
        return f"{type_name(exc)}: (the traceback could not be formatted)\n"


# Functions found by path in this process: a worker looks up the same few again and again.
_located: dict[str, Callable[..., Any]] = {}


def locate(func: object) -> Callable[..., Any] | None:
    """The callable ``func`` names; an import error in its module is raised as itself."""
    if isinstance(func, str) and func in _located:
        return _located[func]
    try:
        found = pydoc.locate(func) if isinstance(func, str) and func else func
    except pydoc.ErrorDuringImport as failed:
        cause = failed.value
        raise (cause if isinstance(cause, BaseException) else ImportError(str(failed))) from None
    if not callable(found):
        return None
    if isinstance(func, str):
        _located[func] = found
    return cast("Callable[..., Any]", found)


@contextlib.contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise ``TaskTimeout`` in this (main) thread after ``seconds``."""
    if not seconds or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TaskTimeout(f"the task ran past its timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_result(value: Any) -> None:
    """Raise ``ResultRefused`` for a return value that cannot be kept as a result."""
    if value is None or isinstance(value, bool | float):
        return
    try:
        size = len(pickle.dumps(value, -1))
    except Exception as exc:
        raise ResultRefused(
            f"the task's return value ({type(value).__name__}) cannot be pickled, so it "
            f"cannot be kept as its result: {message_of(exc)}"
        ) from exc
    limit = int(settings.JOBS_RESULT_MAX_BYTES)
    if limit and size > limit:
        raise ResultRefused(
            f"the task's return value is {size:,} bytes pickled, over the "
            f"{limit:,}-byte limit (JOBS_RESULT_MAX_BYTES); return less, or store it elsewhere"
        )


def run(task: dict[str, Any], *, timeout: float | None) -> Outcome:
    """Run the package's function once; ``task`` gets django-q2's result fields."""
    started_at = timezone.now()
    began = time.monotonic()
    func: Callable[..., Any] | None = None
    value: Any = None
    error: BaseException | None = None
    try:
        func = locate(task.get("func"))
        _send(pre_execute, func=func, task=task)
        if func is None:
            raise FunctionNotFound(f"Function {task.get('func')} is not defined")
        with alarm(timeout):
            value = func(*task.get("args", ()), **task.get("kwargs", {}))
        if isinstance(value, Snooze):
            raise value  # returned or raised, a snooze is the same outcome
        if not getattr(func, "transactional", False):  # it checked before its commit
            check_result(value)
    except BaseException as exc:  # every way a task can end is an outcome
        error = exc
    stopped = timezone.now()
    outcome = Outcome(
        success=error is None,
        started_at=started_at,
        stopped=stopped,
        duration=time.monotonic() - began,
        value=value,
        error=error,
    )
    if error is not None:
        outcome.value = None
        outcome.error_type = type_name(error)
        outcome.message = clean(message_of(error))
        outcome.traceback = clean(traceback_of(error))
    task["result"] = outcome.value if outcome.success else outcome.result_text
    task["success"] = outcome.success
    task["stopped"] = stopped
    task["started_at"] = started_at
    # ``error``: the exception itself, for receivers that record it (tracing).
    _send(post_execute_in_worker, func=func, task=task, error=error)
    return outcome


def _send(sent: Signal, **kwargs: Any) -> None:
    """A raising receiver is the receiver's problem, not the task's outcome: logged."""
    try:
        sent.send(sender="django_q", **kwargs)
    except Exception:
        logger.exception("signal receiver failed", task_id=kwargs["task"].get("id"))
