"""List failed tasks, newest failure first (``--json`` for scripts)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

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
    }


class Command(BaseCommand):
    help = "List failed tasks (retrying or dead), newest failure first."

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_filter_arguments(parser)
        parser.add_argument("--limit", type=int, default=50, help="at most this many (50)")
        parser.add_argument("--json", action="store_true", help="one JSON array (stable schema)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError(f"--limit must be at least 1 (got {options['limit']}).")
        jobs = list(cli.selection(options)[: options["limit"]])
        if options["json"]:
            self.stdout.write(json.dumps([as_json(job) for job in jobs], indent=2))
            return
        if not jobs:
            self.stdout.write("No failed tasks match.")
            return
        for line in cli.table(jobs):
            self.stdout.write(line)
