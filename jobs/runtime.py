"""The worker runtime: what happens around every task run (jobs.apps connects it)."""

from __future__ import annotations


def connect_signals() -> None:
    """Connect the runtime's django-q2 signal receivers."""
