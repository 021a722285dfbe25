"""Cancel tasks by id, or every task matching the filters (``--all``)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.failures.cli import DRY_RUN_SHOWN
from jobs.models import Job
from jobs.queued import cli, services


class Command(BaseCommand):
    help = (
        "Cancel tasks: queued and retrying ones end cancelled now; running ones are asked "
        "to stop and killed after the grace."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        grace = settings.JOBS_CANCEL_GRACE_SECONDS
        if options.get("grace") is not None:
            try:
                grace = services.parse_grace(str(options["grace"]))
            except ValueError as exc:
                raise CommandError(f"--grace: {exc}.") from None
        queryset = cli.chosen(options)
        if options["dry_run"]:
            jobs = list(queryset)
            waiting = [job.id for job in jobs if job.state != Job.State.RUNNING]
            running = [job.id for job in jobs if job.state == Job.State.RUNNING]
            if options["json"]:
                self._json(dry_run=True, cancelled=waiting, requested=running, grace=grace)
                return
            if jobs:
                for line in cli.table(jobs[:DRY_RUN_SHOWN]):
                    self.stdout.write(line)
                if len(jobs) > DRY_RUN_SHOWN:
                    self.stdout.write(f"... and {len(jobs) - DRY_RUN_SHOWN} more")
            count = len(jobs)
            self.stdout.write(
                f"Would cancel {count} task{'s' if count != 1 else ''} "
                f"({len(running)} running: asked to stop, killed after {grace} s)."
            )
            return
        done = services.cancel_jobs(queryset=queryset, grace=grace)
        if options["json"]:
            self._json(
                dry_run=False, cancelled=done.cancelled, requested=done.requested, grace=grace
            )
            return
        self.stdout.write(services.cancel_summary(done, grace=grace))

    def _json(
        self, *, dry_run: bool, cancelled: list[int], requested: list[int], grace: int
    ) -> None:
        """The stable ``--json`` schema (docs/failures.md)."""
        body = {
            "dry_run": dry_run,
            "cancelled": sorted(cancelled),
            "stop_requested": sorted(requested),
            "grace_seconds": grace,
        }
        self.stdout.write(json.dumps(body, indent=2))
