"""List failed tasks, newest failure first (``--json`` for scripts)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.admin_rows import absolute_task_url
from jobs.failures import cli
from jobs.models import Job


def as_json(job: Job) -> dict[str, Any]:
    """The stable ``--json`` schema (documented in docs/failures.md)."""
    return {
        "id": job.id,
        "task_id": job.task_id,
        "name": job.name,
        "job": job.job_name or None,
        "func": job.func,
        "state": job.state,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "first_failed_at": job.first_failed_at.isoformat() if job.first_failed_at else None,
        "last_failed_at": job.last_failed_at.isoformat() if job.last_failed_at else None,
        "next_retry_at": job.run_at.isoformat() if job.state == Job.State.RETRYING else None,
        "error_type": job.last_error_type,
        "error_message": job.last_error_message,
        "url": absolute_task_url(job.task_id),
    }


class Command(BaseCommand):
    help = "List failed tasks (retrying, dead, cancelled or expired), newest failure first."

    def add_arguments(self, parser: CommandParser) -> None:
        cli.allow_dash_values(parser)
        cli.add_filter_arguments(parser)
        # Parsed in handle(): a bad value is a CommandError (exit 1), not argparse's exit 2.
        parser.add_argument("--limit", default="50", help="at most this many (50, up to 10000)")
        parser.add_argument("--json", action="store_true", help="one JSON array (stable schema)")

    def handle(self, *args: Any, **options: Any) -> None:
        limit = cli.parse_limit(str(options["limit"]))
        jobs = list(cli.selection(options)[:limit])
        if options["json"]:
            self.stdout.write(json.dumps([as_json(job) for job in jobs], indent=2))
            return
        if not jobs:
            self.stdout.write("No failed tasks match.")
            return
        for line in cli.table(jobs):
            self.stdout.write(line)
