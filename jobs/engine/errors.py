"""Exceptions a task raises to steer the failure hook."""

from __future__ import annotations


class DoNotRetry(Exception):
    """Raise (or subclass) in a task to make this failure final: no retry, the task is dead."""
