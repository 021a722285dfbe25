"""Discard failed tasks by id, or every task matching the filters (``--all``)."""

from __future__ import annotations

from jobs.failures import cli, services


class Command(cli.FailedJobsActionCommand):
    help = "Delete failed tasks from the queue (their attempt history is pruned later)."
    verb = "discard"
    past = "Discarded"
    action = staticmethod(services.discard_failed)
