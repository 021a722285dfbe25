"""What the failed-jobs commands share: the selection options, their parsing, and the
ids-or-``--all`` command that ``retry_failed_jobs`` and ``discard_failed_jobs`` are."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from jobs.engine import registry
from jobs.failures.selectors import failed_jobs
from jobs.models import Job

# ASCII digits only: str.isdigit() and \d also accept superscripts and other scripts'
# digits, which int() rejects or reads as another number.
_SINCE = re.compile(r"^([0-9]+)([smhd])$")
_ID = re.compile(r"^[0-9]+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
STATES = ("retrying", "dead", "cancelled", "expired")
MAX_ID = 2**63 - 1  # the id column is a bigint
MAX_LIMIT = 10_000
MAX_SINCE = timedelta(days=3650)
MAX_TEXT = 1000  # characters in a --func/--error/--error-type filter


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``30m``, ``2h``, ``7d`` (or ``45s``) before now; from 1s up to MAX_SINCE."""
    match = _SINCE.fullmatch(value.strip())
    if not match:
        raise CommandError(
            f"--since {value!r} is not a duration: use a number and a unit, like 30m, 2h or 7d."
        )
    amount, unit = match.group(1), match.group(2)
    # In plain seconds first: timedelta() and datetime arithmetic overflow on huge values,
    # and the digit count bounds int() of a very long string.
    seconds = int(amount) * _UNIT_SECONDS[unit] if len(amount) <= 12 else 0
    if not 1 <= seconds <= MAX_SINCE.total_seconds():
        raise CommandError(
            f"--since {value!r} is out of range: give a duration from 1s to "
            f"{MAX_SINCE.days}d, like 30m, 2h or 7d."
        )
    return (now or timezone.now()) - timedelta(seconds=seconds)


def parse_limit(value: str) -> int:
    """``--limit``: a whole number from 1 to MAX_LIMIT."""
    text = value.strip()
    if not _ID.fullmatch(text) or len(text) > 12 or not 1 <= int(text) <= MAX_LIMIT:
        raise CommandError(f"--limit must be a whole number from 1 to {MAX_LIMIT} (got {value!r}).")
    return int(text)


def check_text(name: str, value: str) -> str:
    """A free-text filter the database can take: no NUL or control bytes, not huge."""
    if len(value) > MAX_TEXT:
        raise CommandError(f"--{name} is too long: at most {MAX_TEXT} characters.")
    if any(ord(char) < 32 and char not in "\t" for char in value):
        raise CommandError(f"--{name} contains a control character (such as NUL): remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes from the shell that are not UTF-8 (surrogate escapes)
        raise CommandError(f"--{name} is not valid UTF-8 text: retype it.") from None
    return value


def resolve_func(value: str) -> str:
    """A registered job name (``files.purge_tablo``) or a dotted function path."""
    try:
        return registry.get(value).path
    except registry.UnknownJob:
        return value


def add_filter_arguments(parser: CommandParser) -> None:
    parser.add_argument("--state", help="retrying, dead, cancelled or expired (default: all four)")
    parser.add_argument("--func", help="a job name from the registry or a dotted function path")
    parser.add_argument("--error", help="a substring of the last error message")
    parser.add_argument("--error-type", help="the exact error type, e.g. RuntimeError")
    parser.add_argument("--since", help="failed within this long: 30m, 2h, 7d")


def allow_dash_values(parser: CommandParser) -> None:
    """Let ``--since -2h`` or an id ``-1`` reach our checks (and their clear message)
    instead of argparse's "expected one argument" (exit 2)."""
    parser._negative_number_matcher = re.compile(r"^-[0-9]")


def selection(options: dict[str, Any]) -> QuerySet[Job]:
    """The failed tasks the filter options select (retrying, dead, cancelled, expired)."""
    for name in ("state", "func", "error", "error_type"):
        if options.get(name):
            check_text(name.replace("_", "-"), options[name])
    state = options.get("state")
    if state and state not in STATES:
        raise CommandError(f"--state must be one of: {', '.join(STATES)} (got {state!r}).")
    qs = failed_jobs(
        state=state or None,
        func=resolve_func(options["func"]) if options.get("func") else None,
        error=options.get("error") or None,
        error_type=options.get("error_type") or None,
        since=parse_since(options["since"]) if options.get("since") else None,
    )
    return qs if state else qs.filter(state__in=STATES)


def parse_ids(values: list[str]) -> list[int]:
    ids = []
    for value in values:
        if not _ID.fullmatch(value) or len(value) > 19 or int(value) > MAX_ID:
            raise CommandError(
                f"{value[:40]!r} is not a task id (the numeric id list_failed_jobs shows)."
            )
        ids.append(int(value))
    return ids


FILTERS = ("state", "func", "error", "error_type", "since")
COLUMNS = ("ID", "NAME", "FUNCTION", "STATE", "ATTEMPTS", "LAST FAILURE (UTC)", "ERROR")
ERROR_WIDTH = 60
DRY_RUN_SHOWN = 50  # rows a --dry-run lists before "... and N more"


def error_summary(job: Job) -> str:
    first_line = (job.last_error_message or "").strip().splitlines()
    text = f"{job.last_error_type}: {first_line[0] if first_line else ''}".rstrip(": ")
    return text if len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 1] + "…"


def table(jobs: Iterable[Job]) -> list[str]:
    """The failed-tasks table (header and one line per task), as list_failed_jobs prints it."""
    rows = [
        (
            str(job.id),
            job.job_name or job.name,
            job.func,
            job.state,
            f"{job.attempt}/{job.max_attempts}",
            job.last_failed_at.strftime("%Y-%m-%d %H:%M:%S") if job.last_failed_at else "",
            error_summary(job),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]


def failed_tasks_phrase(count: int) -> str:
    """ "1 failed task", "3 failed tasks": what the commands' summaries count."""
    return f"{count} failed task{'s' if count != 1 else ''}"


def chosen(options: dict[str, Any], *, verb: str) -> QuerySet[Job]:
    """The failed tasks the ``ids`` or ``--all`` (with filters) options name.

    Ids that are unknown or not failed raise ``CommandError``: nothing is changed.
    """
    ids = parse_ids(options["ids"])
    if ids and options["all"]:
        raise CommandError("Give task ids or --all, not both.")
    if not ids and not options["all"]:
        raise CommandError(
            f"Give task ids, or --all (with optional filters) to {verb} every match."
        )
    if ids and any(options.get(name) for name in FILTERS):
        raise CommandError("Filters only apply with --all.")
    queryset = selection(options)
    if ids:
        queryset = queryset.filter(id__in=ids)
        missing = sorted(set(ids) - set(queryset.values_list("id", flat=True)))
        if missing:
            raise CommandError(
                "Not failed tasks (unknown, or running/queued): "
                + ", ".join(map(str, missing))
                + ". Nothing was changed."
            )
    return queryset


class FailedJobsActionCommand(BaseCommand):
    """``<verb>_failed_jobs ID... | --all [filters] [--dry-run]``; a subclass names the
    verb and the service that acts on the chosen tasks (returning how many it changed)."""

    verb: ClassVar[str]  # "retry"
    past: ClassVar[str]  # "Retried"
    action: ClassVar[Callable[..., int]]  # called as action(queryset=...)

    def add_arguments(self, parser: CommandParser) -> None:
        allow_dash_values(parser)
        parser.add_argument("ids", nargs="*", help="task ids (list_failed_jobs shows them)")
        parser.add_argument(
            "--all", action="store_true", help="every failed task the filters match"
        )
        add_filter_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="say what would happen only")

    def handle(self, *args: Any, **options: Any) -> None:
        queryset = chosen(options, verb=self.verb)
        if options["dry_run"]:
            count = queryset.count()
            if count:
                for line in table(queryset[:DRY_RUN_SHOWN]):
                    self.stdout.write(line)
                if count > DRY_RUN_SHOWN:
                    self.stdout.write(f"... and {count - DRY_RUN_SHOWN} more")
            self.stdout.write(f"Would {self.verb} {failed_tasks_phrase(count)}.")
            return
        count = self.action(queryset=queryset)
        self.stdout.write(f"{self.past} {failed_tasks_phrase(count)}.")
