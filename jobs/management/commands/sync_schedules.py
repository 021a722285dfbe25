from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.schedules import sync_schedules


class Command(BaseCommand):
    help = "Create, update and delete django-q2 Schedule rows to match the schedules in code."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        report = sync_schedules()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), default=str, sort_keys=True))
            return
        for label, names in (
            ("created", report.created),
            ("updated", report.updated),
            ("deleted", report.deleted),
            ("unchanged", report.unchanged),
        ):
            if names:
                self.stdout.write(f"{label}: {', '.join(names)}")
        for name, diff in report.edited.items():
            changes = "; ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in sorted(diff.items()))
            self.stderr.write(f"warning: schedule {name!r} was edited ({changes}); restored")
        for name, reason in report.skipped.items():
            self.stderr.write(f"skipped: {name} ({reason})")
