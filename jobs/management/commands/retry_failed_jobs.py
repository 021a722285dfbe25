"""Retry failed tasks by id, or every task matching the filters (``--all``)."""

from __future__ import annotations

from jobs.failures import cli, services


class Command(cli.FailedJobsActionCommand):
    help = "Queue failed tasks to run now with a fresh attempt budget (history kept)."
    verb = "retry"
    past = "Retried"
    action = staticmethod(services.retry_failed)
