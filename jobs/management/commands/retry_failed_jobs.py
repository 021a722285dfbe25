"""Retry failed tasks by id, or every task matching the filters (``--all``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.failures import cli, services


class Command(BaseCommand):
    help = "Queue failed tasks to run now with a fresh attempt budget (history kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", help="task ids (list_failed_jobs shows them)")
        parser.add_argument(
            "--all", action="store_true", help="every failed task the filters match"
        )
        cli.add_filter_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="say what would happen only")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = cli.parse_ids(options["ids"])
        filters = [name for name in cli.FILTERS if options.get(name)]
        if ids and options["all"]:
            raise CommandError("Give task ids or --all, not both.")
        if not ids and not options["all"]:
            raise CommandError(
                "Give task ids, or --all (with optional filters) to retry every match."
            )
        if ids and filters:
            raise CommandError("Filters only apply with --all.")
        queryset = cli.selection(options)
        if ids:
            queryset = queryset.filter(id__in=ids)
            missing = sorted(set(ids) - set(queryset.values_list("id", flat=True)))
            if missing:
                raise CommandError(
                    "Not failed tasks (unknown, or running/queued): "
                    + ", ".join(map(str, missing))
                    + ". Nothing was changed."
                )
        if options["dry_run"]:
            count = queryset.count()
            self.stdout.write(f"Would retry {count} failed task{'s' if count != 1 else ''}.")
            return
        count = services.retry_failed(queryset=queryset)
        past = "Retried"
        self.stdout.write(f"{past} {count} failed task{'s' if count != 1 else ''}.")
