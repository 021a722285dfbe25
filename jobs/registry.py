"""The job registry: every background job is declared once, in the app that owns it.

    from jobs.registry import job

    @job("files.purge_tablo", timeout=600, max_attempts=10,
         unique=lambda tablo_id: f"purge:{tablo_id}")
    def purge_tablo(tablo_id: str) -> None:
        cleanup.tablo_files_purge(tablo_id=UUID(tablo_id))

and enqueued by name with JSON-friendly arguments:

    registry.enqueue("files.purge_tablo", str(tablo.id))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django_q.tasks import async_task


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

    @property
    def path(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


_by_name: dict[str, JobSpec] = {}
_by_path: dict[str, JobSpec] = {}


def job(name: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare ``func`` as the job ``name`` (see JobSpec for the options)."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        spec = JobSpec(name=name, func=func, **options)
        existing = _by_name.get(name)
        if existing is not None and existing.path != spec.path:
            raise ValueError(f"job {name!r} is declared twice: {existing.path} and {spec.path}")
        _by_name[name] = spec
        _by_path[spec.path] = spec
        return func

    return register


def get(name: str) -> JobSpec:
    try:
        return _by_name[name]
    except KeyError:
        known = ", ".join(sorted(_by_name)) or "none"
        raise UnknownJob(f"unknown job {name!r}; registered jobs: {known}") from None


def for_func(path: str) -> JobSpec | None:
    """The spec of the job whose function has this dotted path, if registered."""
    return _by_path.get(path)


def all_jobs() -> list[JobSpec]:
    return sorted(_by_name.values(), key=lambda spec: spec.name)


def enqueue(name: str, *args: Any, on_commit: bool = True, **kwargs: Any) -> str | None:
    """Enqueue the registered job ``name``.

    By default the task is enqueued after the current transaction commits, so
    the worker never sees data that was rolled back; ``on_commit=False`` puts
    the queue row inside the caller's transaction instead.
    """
    spec = get(name)

    def push() -> str:
        return async_task(spec.path, *args, **kwargs)

    if on_commit and not transaction.get_autocommit():
        transaction.on_commit(push)
        return None
    return push()
