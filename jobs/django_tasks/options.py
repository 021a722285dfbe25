"""The retry policy of Django tasks: ``TASKS[alias]["OPTIONS"]``, per task path, with defaults.

    "OPTIONS": {
        "max_attempts": 5,          # every @task of this backend (else JOBS_DEFAULT_MAX_ATTEMPTS)
        "timeout": 300,             # seconds (else Q_TIMEOUT)
        "backoff": [10, 60, 600],   # seconds after failed attempt 1, 2, 3... (else the engine's)
        "tasks": {                     # per task path: wins over @task(...) and the defaults
            "files.tasks.send_digest": {"max_attempts": 3, "unique": True, "timeout": 60},
        },
    }

Precedence: the per-path entry, then the task's own ``@task(max_attempts=..., ...)``
(``TabloTask``'s fields), then the backend's defaults, then the engine's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

POLICY_KEYS = ("max_attempts", "timeout", "backoff", "unique")
DEFAULT_KEYS = ("max_attempts", "timeout", "backoff")
TABLE_KEY = "tasks"
UNIQUE_KEY_MAX = 255


class OptionsError(ValueError):
    """A backend's OPTIONS cannot be used; the message names the key and says what is valid."""


@dataclass(frozen=True)
class Steps:
    """A backoff given as seconds per failed attempt; the last step repeats."""

    seconds: tuple[float, ...]

    def __call__(self, attempt: int) -> float:
        return self.seconds[min(max(attempt, 1), len(self.seconds)) - 1]


@dataclass(frozen=True)
class UniqueKey:
    """A unique key for a task path: from a function of the arguments, or from the
    arguments themselves (``unique=True``)."""

    path: str
    of: Callable[..., str] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        if self.of is not None:
            key = f"{self.path}:{self.of(*args, **kwargs)}"
        else:
            key = f"{self.path}:{json.dumps([args, kwargs], sort_keys=True)}"
        if len(key) <= UNIQUE_KEY_MAX:
            return key
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.path[: UNIQUE_KEY_MAX - len(digest) - 1]}:{digest}"


@dataclass(frozen=True)
class Policy:
    """What the engine's ``@job`` gets for one task path (None: the engine's default)."""

    max_attempts: int | None = None
    timeout: int | None = None
    backoff: Callable[[int], float] | None = None
    unique: Callable[..., str] | None = None


@dataclass(frozen=True)
class Options:
    defaults: Mapping[str, Any]
    table: Mapping[str, Mapping[str, Any]]


def parse(raw: Mapping[str, Any]) -> Options:
    """Validate a backend's OPTIONS; ``OptionsError`` says what is wrong."""
    if not isinstance(raw, Mapping):
        raise OptionsError("OPTIONS must be a dict.")
    unknown = sorted(set(raw) - {*DEFAULT_KEYS, TABLE_KEY})
    if unknown:
        raise OptionsError(
            f"OPTIONS has unknown keys {unknown}; valid: {[*DEFAULT_KEYS, TABLE_KEY]}."
        )
    defaults = {key: raw[key] for key in DEFAULT_KEYS if raw.get(key) is not None}
    for key, value in defaults.items():
        _validate(key, value, where="OPTIONS")
    table = raw.get(TABLE_KEY) or {}
    if not isinstance(table, Mapping):
        raise OptionsError(f"OPTIONS[{TABLE_KEY!r}] must map task paths to dicts of options.")
    for path, entry in table.items():
        where = f"OPTIONS[{TABLE_KEY!r}][{path!r}]"
        if not isinstance(path, str) or "." not in path:
            raise OptionsError(f"{where}: the key must be a task's dotted module path.")
        if not isinstance(entry, Mapping):
            raise OptionsError(f"{where} must be a dict with keys among {list(POLICY_KEYS)}.")
        unknown = sorted(set(entry) - set(POLICY_KEYS))
        if unknown:
            raise OptionsError(f"{where} has unknown keys {unknown}; valid: {list(POLICY_KEYS)}.")
        for key, value in entry.items():
            _validate(key, value, where=where)
    return Options(defaults=defaults, table={p: dict(e) for p, e in table.items()})


def check_declared(declared: Mapping[str, Any], *, path: str) -> None:
    """Validate the policy a task declares itself (``@task(max_attempts=...)``)."""
    for key, value in declared.items():
        if value is not None:
            _validate(key, value, where=f"@task {path}")


def policy(options: Options, *, path: str, declared: Mapping[str, Any]) -> Policy:
    """The policy of the task at ``path`` (see the module docstring for the precedence)."""
    chosen: dict[str, Any] = dict(options.defaults)
    chosen.update({k: v for k, v in declared.items() if v is not None})
    chosen.update({k: v for k, v in options.table.get(path, {}).items() if v is not None})
    unique = chosen.get("unique")
    return Policy(
        max_attempts=chosen.get("max_attempts"),
        timeout=chosen.get("timeout"),
        backoff=_backoff(chosen.get("backoff")),
        unique=_unique(unique, path=path),
    )


def _validate(key: str, value: Any, *, where: str) -> None:
    if key in ("max_attempts", "timeout"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionsError(
                f"{where}: {key} must be a whole number of at least 1, not {value!r}."
            )
    elif key == "backoff":
        if _is_seconds(value) or callable(value) or isinstance(value, str):
            return
        if isinstance(value, Sequence) and value and all(_is_seconds(step) for step in value):
            return
        raise OptionsError(
            f"{where}: backoff must be seconds (a number, or a list of numbers per failed "
            f"attempt), a function attempt -> seconds, or its dotted path; not {value!r}."
        )
    elif key == "unique":
        if isinstance(value, bool) or callable(value) or isinstance(value, str):
            return
        raise OptionsError(
            f"{where}: unique must be True (one active task per arguments), a function of "
            f"the arguments returning a key, or its dotted path; not {value!r}."
        )


def _is_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _backoff(value: Any) -> Callable[[int], float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = import_string(value)
    if _is_seconds(value):
        return Steps(seconds=(float(value),))
    if callable(value):
        return value  # type: ignore[no-any-return]
    return Steps(seconds=tuple(float(step) for step in value))


def _unique(value: Any, *, path: str) -> Callable[..., str] | None:
    if value is None or value is False:
        return None
    if value is True:
        return UniqueKey(path=path)
    return UniqueKey(path=path, of=import_string(value) if isinstance(value, str) else value)
