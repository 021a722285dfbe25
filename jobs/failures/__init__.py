"""The project-wide failure hook, retries with backoff, and dead tasks."""

from __future__ import annotations


def connect_signals() -> None:
    """Connect the failure hook to django-q2's signals."""
