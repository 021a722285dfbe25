"""``manage.py cancel_jobs``: the selection of tasks that have not ended, and the table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import QuerySet

from jobs.failures.cli import (
    allow_dash_values,
    check_text,
    parse_ids,
    parse_since,
    resolve_func,
)
from jobs.models import Job

STATES = ("queued", "retrying", "running")
FILTERS = ("state", "func", "queue", "batch", "since")
COLUMNS = ("ID", "NAME", "FUNCTION", "STATE", "ATTEMPTS", "CREATED (UTC)")


def add_arguments(parser: CommandParser) -> None:
    allow_dash_values(parser)
    parser.add_argument("ids", nargs="*", help="task ids (the admin's and list_failed_jobs' ids)")
    parser.add_argument("--all", action="store_true", help="every task the filters match")
    parser.add_argument("--state", help="queued, retrying or running (default: all three)")
    parser.add_argument("--func", help="a job name from the registry or a dotted function path")
    parser.add_argument("--queue", help="a queue (cluster name)")
    parser.add_argument("--batch", help="the members of this batch id")
    parser.add_argument("--since", help="created within this long: 30m, 2h, 7d")
    parser.add_argument(
        "--grace",
        help="seconds a running task gets to stop before it is killed "
        "(default: JOBS_CANCEL_GRACE_SECONDS)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would happen only")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def chosen(options: dict[str, Any]) -> QuerySet[Job]:
    """The tasks (not ended) that the ids, or ``--all`` with filters, name.

    Ids that are unknown or already ended raise ``CommandError``: nothing is changed.
    """
    ids = parse_ids(options["ids"])
    if ids and options["all"]:
        raise CommandError("Give task ids or --all, not both.")
    if not ids and not options["all"]:
        raise CommandError("Give task ids, or --all (with optional filters) to cancel every match.")
    if ids and any(options.get(name) for name in FILTERS):
        raise CommandError("Filters only apply with --all.")
    for name in ("state", "func", "queue"):
        if options.get(name):
            check_text(name, options[name])
    state = options.get("state")
    if state and state not in STATES:
        raise CommandError(f"--state must be one of: {', '.join(STATES)} (got {state!r}).")
    queryset = Job.objects.filter(state__in=[state] if state else STATES).defer("payload")
    if options.get("func"):
        queryset = queryset.filter(func=resolve_func(options["func"]))
    if options.get("queue"):
        queryset = queryset.filter(queue=options["queue"])
    if options.get("batch"):
        [batch] = parse_ids([options["batch"]])
        queryset = queryset.filter(batch=batch)
    if options.get("since"):
        queryset = queryset.filter(created_at__gte=parse_since(options["since"]))
    queryset = queryset.order_by("id")
    if ids:
        queryset = queryset.filter(id__in=ids)
        missing = sorted(set(ids) - set(queryset.values_list("id", flat=True)))
        if missing:
            raise CommandError(
                "Not queued, retrying or running (unknown, or ended): "
                + ", ".join(map(str, missing))
                + ". Nothing was changed."
            )
    return queryset


def table(jobs: Iterable[Job]) -> list[str]:
    rows = [
        (
            str(job.id),
            job.job_name or job.name,
            job.func,
            job.state,
            f"{job.attempt}/{job.max_attempts}",
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]
