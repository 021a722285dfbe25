"""How a task's function is named in logs and records."""

from __future__ import annotations

from typing import Any

from django_q.utils import get_func_repr


def func_path(func: Any) -> str:
    """The dotted path of a task's function: ``math.sqrt`` for a builtin too.

    django-q2's ``get_func_repr`` falls back to ``str(func)`` for anything that is
    not a plain function or method, which makes ``"<built-in function sqrt>"``.
    """
    if func is None:
        return ""
    if isinstance(func, str):
        return func
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if module and qualname and "<" not in qualname:
        return f"{module}.{qualname}"
    return get_func_repr(func) or ""
