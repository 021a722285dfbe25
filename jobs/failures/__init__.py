"""The project-wide failure hook, retries with backoff, and dead tasks."""

from __future__ import annotations


def connect_signals() -> None:
    """Connect the failure hook to django-q2's signals and declare the retention job."""
    from django_q.signals import post_execute

    from jobs.failures import hook, tasks  # noqa: F401 (tasks: registers jobs.prune_history)

    post_execute.connect(hook.on_post_execute, sender="django_q", dispatch_uid="jobs.failures")
