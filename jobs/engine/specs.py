"""The table of declared jobs: name and function path -> ``JobSpec``.

``jobs.engine.registry`` declares jobs into it (``@job``); the broker and the row
mapping read it. It imports nothing of the engine, so every layer can.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.utils import timezone

logger = structlog.get_logger("jobs.engine.specs")


@dataclass(frozen=True)
class Every:
    """A job's periodic run, declared with the job; ``jobs.schedules`` keeps its row.

    ``name`` is the django-q2 ``Schedule`` row's name. Give exactly one of
    ``minutes`` or ``cron`` (UTC); ``minutes`` may be a function of the settings,
    read at each sync.
    """

    name: str
    minutes: int | Callable[[], int] | None = None
    cron: str | None = None

    def every_minutes(self) -> int | None:
        return self.minutes() if callable(self.minutes) else self.minutes

    def __post_init__(self) -> None:
        if (self.minutes is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of minutes or cron")


class UnknownJob(LookupError):
    """Raised for a job name that no app declared."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: Callable[..., Any]
    timeout: int | None = None
    max_attempts: int | None = None  # None: settings.JOBS_DEFAULT_MAX_ATTEMPTS
    backoff: Callable[[int], float] | None = None  # attempt -> seconds; None: global
    priority: int = 0
    cluster: str | None = None
    unique: Callable[..., str] | None = None  # (*args, **kwargs) -> key
    # Writes and completion in one transaction (jobs.engine.completion); database broker only.
    transactional: bool = False
    schedule: Every | None = None  # a periodic run, synced by jobs.schedules
    # Seconds from enqueue: a task not started by then ends expired (never run).
    expires: float | None = None
    # Flow control, enforced in the claim across every node (jobs.engine.limits):
    # at most ``concurrency`` running at once (per ``concurrency_key`` when given),
    # at most ``rate[0]`` starts in any ``rate[1]`` seconds (per ``rate_key``).
    concurrency: int | None = None
    concurrency_key: Callable[..., str] | None = None  # (*args, **kwargs) -> key
    rate: tuple[int, float] | None = None
    rate_key: Callable[..., str] | None = None  # (*args, **kwargs) -> key

    def __post_init__(self) -> None:
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ValueError(f"job {self.name!r}: concurrency must be a whole number >= 1")
        if self.concurrency_key is not None and self.concurrency is None:
            raise ValueError(f"job {self.name!r}: concurrency_key needs concurrency=N")
        if self.rate is not None:
            count, seconds = _rate(self.name, self.rate)
            object.__setattr__(self, "rate", (count, seconds))
        if self.rate_key is not None and self.rate is None:
            raise ValueError(f"job {self.name!r}: rate_key needs rate=(N, seconds)")

    @property
    def path(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


def deadline(value: object, *, now: datetime | None = None) -> datetime:
    """An ``expires=`` value as an aware datetime: seconds (or a timedelta) from ``now``,
    or a datetime (a naive one is in the current time zone)."""
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value)
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expires= takes seconds or a datetime (got {value!r})")
    if not 0 <= value <= 10 * 365 * 86400:
        raise ValueError(f"expires= takes seconds from 0 to ten years (got {value!r})")
    return (now or timezone.now()) + timedelta(seconds=value)


# The longest rate window: starts older than this are pruned whatever their key.
MAX_RATE_SECONDS = 86400


def _rate(name: str, rate: object) -> tuple[int, float]:
    parts: tuple[Any, ...] = tuple(rate) if isinstance(rate, tuple | list) else ()
    count, seconds = parts if len(parts) == 2 else (None, None)
    if not (
        isinstance(count, int)
        and not isinstance(count, bool)
        and count >= 1
        and isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and 0 < seconds <= MAX_RATE_SECONDS
    ):
        raise ValueError(
            f"job {name!r}: rate must be (N, seconds): N a whole number >= 1, "
            f"0 < seconds <= {MAX_RATE_SECONDS}"
        )
    return count, float(seconds)


_by_name: dict[str, JobSpec] = {}
_by_path: dict[str, JobSpec] = {}


def add(spec: JobSpec) -> None:
    existing = _by_name.get(spec.name)
    if existing is not None and existing.path != spec.path:
        raise ValueError(f"job {spec.name!r} is declared twice: {existing.path} and {spec.path}")
    _by_name[spec.name] = spec
    _by_path[spec.path] = spec


def by_name(name: str) -> JobSpec | None:
    return _by_name.get(name)


def unregister(name: str) -> None:
    """Forget a job (tests and scaffolding use it; apps never need to)."""
    spec = _by_name.pop(name, None)
    if spec is not None:
        _by_path.pop(spec.path, None)


def get(name: str) -> JobSpec:
    try:
        return _by_name[name]
    except KeyError:
        known = ", ".join(sorted(_by_name)) or "none"
        raise UnknownJob(f"unknown job {name!r}; registered jobs: {known}") from None


def for_func(path: str) -> JobSpec | None:
    """The spec of the job whose function has this dotted path, if registered."""
    return _by_path.get(path)


def spec_for(path: str) -> JobSpec | None:
    """The spec of the function at ``path``, importing its module first if needed.

    A job is registered when its module is imported; a process handed a task by
    path (a worker process, the scheduler) may not have imported it yet. A
    function that no longer exists has no spec. A module that fails to import is
    logged: its jobs' own policy is unknown until it is fixed.
    """
    spec = _by_path.get(path)
    module = path.rpartition(".")[0]
    if spec is not None or not module or module in sys.modules:
        return spec
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None  # the module itself is gone (or the path names no module)
        logger.error("job module import failed", func=path, module=module,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return None
    except Exception as exc:
        logger.error("job module import failed", func=path, module=module,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return None
    return _by_path.get(path)


def all_jobs() -> list[JobSpec]:
    return sorted(_by_name.values(), key=lambda spec: spec.name)
