"""What the failed-jobs commands share: the selection options and their parsing."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from jobs import registry
from jobs.failures.selectors import failed_jobs
from jobs.models import Job

_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
STATES = ("retrying", "dead")


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``30m``, ``2h``, ``7d`` (or ``45s``) before now."""
    match = _SINCE.match(value.strip())
    if not match:
        raise CommandError(
            f"--since {value!r} is not a duration: use a number and a unit, like 30m, 2h or 7d."
        )
    amount, unit = int(match.group(1)), match.group(2)
    return (now or timezone.now()) - timedelta(**{_UNITS[unit]: amount})


def resolve_func(value: str) -> str:
    """A registered job name (``files.purge_tablo``) or a dotted function path."""
    try:
        return registry.get(value).path
    except registry.UnknownJob:
        return value


def add_filter_arguments(parser: CommandParser) -> None:
    parser.add_argument("--state", help="retrying or dead (default: both)")
    parser.add_argument("--func", help="a job name from the registry or a dotted function path")
    parser.add_argument("--error", help="a substring of the last error message")
    parser.add_argument("--error-type", help="the exact error type, e.g. RuntimeError")
    parser.add_argument("--since", help="failed within this long: 30m, 2h, 7d")


def selection(options: dict[str, Any]) -> QuerySet[Job]:
    """The failed tasks the filter options select (state retrying or dead)."""
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
        if not value.isdigit():
            raise CommandError(
                f"{value!r} is not a task id (the numeric id list_failed_jobs shows)."
            )
        ids.append(int(value))
    return ids


FILTERS = ("state", "func", "error", "error_type", "since")
