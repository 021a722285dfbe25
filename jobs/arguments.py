"""A task's arguments as operators see and search them, with secrets masked.

An argument is masked when its name is in ``JOBS_MASKED_ARGUMENTS``: a keyword
argument, a positional one bound to a parameter of that name, or a dictionary key
anywhere inside an argument. ``named_arguments`` serves the task page;
``search_text`` is the short text stored with the queue row at enqueue (the
engine's row building calls it), so it must stay cheap: bounded reprs, no import.
"""

from __future__ import annotations

import functools
import inspect
import reprlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

MASK = "****"
SEARCH_TEXT_MAX = 1000  # characters of argument text stored per task
_SEARCH_ITEMS = 10  # items of a list or dict walked for the search text


class _Masked:
    """Prints as the mask, unquoted, inside any repr or pretty-print."""

    def __repr__(self) -> str:
        return MASK


MASKED = _Masked()

_short = reprlib.Repr()
_short.maxstring = 200
_short.maxother = 200
_short.maxlist = _short.maxtuple = _short.maxset = _short.maxdict = _SEARCH_ITEMS
_short.maxlevel = 3


_names: tuple[object, frozenset[str]] = (None, frozenset())


def _masked_names() -> frozenset[str]:
    # Rebuilt when the setting is another object (tests override it), else reused.
    global _names
    configured = settings.JOBS_MASKED_ARGUMENTS
    if _names[0] is not configured:
        _names = (configured, frozenset(n.strip().lower() for n in configured if n.strip()))
    return _names[1]


def is_masked(name: object) -> bool:
    """Whether an argument or key of this name is a secret (``JOBS_MASKED_ARGUMENTS``)."""
    return isinstance(name, str) and name.lower() in _masked_names()


def _short_repr(value: Any) -> str:
    """A bounded repr: the builtin one for plain short values, reprlib's otherwise."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str) and len(value) <= _short.maxstring:
        return repr(value)
    return _short.repr(masked(value, limit=_SEARCH_ITEMS))


def masked(value: Any, *, limit: int | None = None, depth: int = 4) -> Any:
    """``value`` with the values of secret dictionary keys replaced by the mask.

    ``limit`` keeps the first items of each list or dict only (the search text's
    bound); deeper than ``depth`` a value is left as it is.
    """
    if depth <= 0:
        return value
    if isinstance(value, Mapping):
        items = list(value.items())[:limit] if limit else value.items()
        return {
            k: MASKED if is_masked(k) else masked(v, limit=limit, depth=depth - 1) for k, v in items
        }
    if isinstance(value, list | tuple):
        shown = value[:limit] if limit else value
        walked = [masked(v, limit=limit, depth=depth - 1) for v in shown]
        return tuple(walked) if isinstance(value, tuple) else walked
    return value


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # builtins without one
        return None


def _function(func: Any, *, load: bool) -> Callable[..., Any] | None:
    """The task's function: itself, or its dotted path resolved (imported only if ``load``)."""
    if callable(func):
        return func  # type: ignore[no-any-return]  # narrowed by callable()
    if not isinstance(func, str) or "." not in func:
        return None
    module, _, name = func.rpartition(".")
    if not load:
        found = getattr(sys.modules.get(module), name, None)
        return found if callable(found) else None
    try:
        loaded = import_string(func)
    except Exception:  # an import error of the task's module is the task page's to show
        return None
    return loaded if callable(loaded) else None


def _bound(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, load: bool
) -> list[tuple[str, Any]]:
    """``(name, value)`` per argument: parameter names when the function's signature
    binds them, else ``args[i]`` and the keyword names."""
    function = _function(func, load=load)
    signature = _signature(function) if function is not None else None
    if signature is not None:
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError:
            pass  # the call would fail anyway: show what was passed
        else:
            pairs: list[tuple[str, Any]] = []
            for name, value in bound.arguments.items():
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    pairs += [(f"{name}[{i}]", item) for i, item in enumerate(value)]
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    pairs += list(value.items())
                else:
                    pairs.append((name, value))
            return pairs
    return [(f"args[{i}]", value) for i, value in enumerate(args)] + list(kwargs.items())


def named_arguments(
    func: Any, args: Any, kwargs: Any, *, load: bool = True
) -> list[tuple[str, Any]]:
    """The arguments of a call of ``func``, named and masked (the task page's rows)."""
    pairs = _bound(func, tuple(args or ()), dict(kwargs or {}), load=load)
    return [(name, MASKED if is_masked(name) else masked(value)) for name, value in pairs]


def search_text(task: Mapping[str, Any]) -> str:
    """``name=value`` for each argument of a task package, masked, bounded in size.

    Called once per enqueued task: it never imports the task's module (a function
    not loaded yet has its positional arguments named ``args[i]``) and walks only
    the first items of long lists and dicts.
    """
    try:
        pairs = _bound(
            task.get("func"), tuple(task.get("args") or ()), dict(task.get("kwargs") or {}),
            load=False,
        )  # fmt: skip
        text = " ".join(
            f"{name}={MASK if is_masked(name) else _short_repr(value)}" for name, value in pairs
        )
    except Exception:  # an argument whose repr raises must not stop the enqueue
        return ""
    return text[:SEARCH_TEXT_MAX]
