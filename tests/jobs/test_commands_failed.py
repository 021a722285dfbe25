from __future__ import annotations

import getpass
import json
import logging
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs.failures import cli
from jobs.models import Job, JobAttempt
from tests.support.failures import failed_rows

NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_failures() -> tuple[Job, Job]:
    [dead] = failed_rows(1, failed_at=NOW - timedelta(hours=3), message="disk full")
    [retrying] = failed_rows(
        1,
        state=Job.State.RETRYING,
        func="tests.support.failures.custom_policy",
        error_type="ValueError",
        message="bad value " + "x" * 80,
        failed_at=NOW,
        attempt=1,
    )
    Job.objects.filter(id=retrying.id).update(run_at=NOW + timedelta(seconds=7))
    dead.refresh_from_db()
    retrying.refresh_from_db()
    return dead, retrying


@pytest.mark.django_db
def test_list_table_newest_first(two_failures: tuple[Job, Job]) -> None:
    dead, retrying = two_failures
    w = max(len(str(dead.id)), len(str(retrying.id)), 2)
    header = (
        f"{'ID'.ljust(w)}  NAME{' ' * 17}FUNCTION{' ' * 30}STATE{' ' * 5}ATTEMPTS  "
        "LAST FAILURE (UTC)   ERROR"
    )
    assert run("list_failed_jobs").splitlines() == [
        header,
        f"{str(retrying.id).ljust(w)}  tests.custom_policy  tests.support.failures.custom_policy  "
        f"retrying  1/2       2026-11-24 10:00:00  ValueError: bad value {'x' * 37}…",
        f"{str(dead.id).ljust(w)}  tests.always_fails   tests.support.failures.always_fails   "
        "dead      3/3       2026-11-24 07:00:00  RuntimeError: disk full 0",
    ]


@pytest.mark.django_db
def test_list_json_schema(two_failures: tuple[Job, Job], settings) -> None:
    settings.SITE_URL = "https://tablo.example.com"
    dead, retrying = two_failures
    data = json.loads(run("list_failed_jobs", "--json"))
    assert [row["id"] for row in data] == [retrying.id, dead.id]
    assert data[0] == {
        "id": retrying.id,
        "task_id": retrying.task_id,
        "name": retrying.name,
        "job": "tests.custom_policy",
        "func": "tests.support.failures.custom_policy",
        "state": "retrying",
        "attempt": 1,
        "max_attempts": 2,
        "first_failed_at": "2026-11-24T09:55:00+00:00",
        "last_failed_at": "2026-11-24T10:00:00+00:00",
        "next_retry_at": "2026-11-24T10:00:07+00:00",
        "error_type": "ValueError",
        "error_message": "bad value " + "x" * 80 + " 0",
        "url": f"https://tablo.example.com/admin/jobs/task/{retrying.task_id}/",
    }
    assert data[1]["next_retry_at"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--state", "dead"], ["dead"]),
        (["--state", "retrying"], ["retrying"]),
        (["--func", "tests.always_fails"], ["dead"]),
        (["--func", "tests.support.failures.custom_policy"], ["retrying"]),
        (["--error", "DISK"], ["dead"]),
        (["--error-type", "ValueError"], ["retrying"]),
        (["--limit", "1"], ["retrying"]),
        (["--since", "1h"], ["retrying"]),
        (["--since", "4h"], ["retrying", "dead"]),
        (["--since", "30m", "--state", "dead"], []),
    ],
)
def test_list_filters(
    two_failures: tuple[Job, Job], monkeypatch: pytest.MonkeyPatch, args: list, expected: list
) -> None:
    monkeypatch.setattr(timezone, "now", lambda: NOW + timedelta(minutes=1))
    data = json.loads(run("list_failed_jobs", "--json", *args))
    assert [row["state"] for row in data] == expected


@pytest.mark.django_db
def test_list_empty() -> None:
    assert run("list_failed_jobs") == "No failed tasks match.\n"


@pytest.mark.django_db
def test_list_ignores_tasks_that_never_failed_or_are_queued_again() -> None:
    [row] = failed_rows(1)
    Job.objects.filter(id=row.id).update(state=Job.State.QUEUED)
    assert json.loads(run("list_failed_jobs", "--json")) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--state", "running"],
            "--state must be one of: retrying, dead, cancelled, expired (got 'running').",
        ),
        (["--since", "yesterday"], "--since 'yesterday' is not a duration"),
        (["--since", "5w"], "--since '5w' is not a duration"),
        (["--limit", "0"], "--limit must be a whole number from 1 to 10000 (got '0')."),
    ],
)
def test_list_bad_input(args: list, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("list_failed_jobs", *args)


@pytest.mark.django_db
def test_retry_by_id_keeps_history_and_gives_a_fresh_budget() -> None:
    target, other = failed_rows(2)
    assert run("retry_failed_jobs", str(target.id)) == "Retried 1 failed task.\n"
    target.refresh_from_db()
    other.refresh_from_db()
    assert (target.state, target.attempt, target.max_attempts) == ("queued", 3, 6)
    assert target.run_at <= timezone.now()
    assert target.last_error_type == "RuntimeError"  # the last failure stays visible
    assert other.state == "dead"
    assert JobAttempt.objects.filter(task_id=target.task_id).count() == 1


@pytest.mark.django_db
def test_retry_all_matching_with_filters() -> None:
    failed_rows(2, message="disk full")
    failed_rows(3, message="timeout")
    assert run("retry_failed_jobs", "--all", "--error", "timeout") == "Retried 3 failed tasks.\n"
    assert Job.objects.filter(state="queued").count() == 3
    assert Job.objects.filter(state="dead").count() == 2


@pytest.mark.django_db
def test_retry_dry_run_lists_the_tasks_and_changes_nothing() -> None:
    rows = failed_rows(2)
    lines = run("retry_failed_jobs", "--all", "--dry-run").splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "FUNCTION"]
    assert sorted(int(line.split()[0]) for line in lines[1:-1]) == sorted(r.id for r in rows)
    assert lines[-1] == "Would retry 2 failed tasks."
    assert Job.objects.filter(state="dead").count() == 2


@pytest.mark.django_db
def test_a_long_dry_run_lists_the_first_tasks_and_counts_the_rest(monkeypatch) -> None:
    monkeypatch.setattr(cli, "DRY_RUN_SHOWN", 2)
    failed_rows(5)
    lines = run("discard_failed_jobs", "--all", "--dry-run").splitlines()
    assert len(lines) == 1 + 2 + 2
    assert lines[-2:] == ["... and 3 more", "Would discard 5 failed tasks."]
    assert Job.objects.count() == 5


@pytest.mark.django_db
def test_discard_by_id_and_all() -> None:
    first, _second, _third = failed_rows(3)
    assert run("discard_failed_jobs", str(first.id)) == "Discarded 1 failed task.\n"
    dry_run = run("discard_failed_jobs", "--all", "--dry-run").splitlines()
    assert dry_run[-1] == "Would discard 2 failed tasks."
    assert run("discard_failed_jobs", "--all", "--state", "dead") == "Discarded 2 failed tasks.\n"
    assert not Job.objects.exists()
    # History stays until pruned.
    assert JobAttempt.objects.filter(task_id=first.task_id).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["retry_failed_jobs", "discard_failed_jobs"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Give task ids, or --all"),
        (["1", "--all"], "Give task ids or --all, not both."),
        (["1", "--state", "dead"], "Filters only apply with --all."),
        (["abc"], "'abc' is not a task id"),
        (["--all", "--state", "queued"], "--state must be one of"),
        (["--all", "--since", "2x"], "--since '2x' is not a duration"),
    ],
)
def test_retry_and_discard_bad_input(command: str, args: list, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(command, *args)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("command", "verb"), [("retry_failed_jobs", "retry"), ("discard_failed_jobs", "discard")]
)
def test_no_ids_and_no_all_names_the_commands_verb(command: str, verb: str) -> None:
    with pytest.raises(CommandError) as raised:
        run(command)
    assert str(raised.value) == (
        f"Give task ids, or --all (with optional filters) to {verb} every match."
    )


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["retry_failed_jobs", "discard_failed_jobs"])
def test_unknown_or_running_ids_change_nothing(command: str) -> None:
    dead, running = failed_rows(2)
    Job.objects.filter(id=running.id).update(state=Job.State.RUNNING)
    with pytest.raises(CommandError, match=f"running/queued\\): {running.id}, 999999"):
        run(command, str(dead.id), str(running.id), "999999")
    assert Job.objects.get(id=dead.id).state == "dead"


def _audit_events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    return [
        r.msg
        for r in caplog.records
        if r.name == "jobs.failures" and isinstance(r.msg, dict) and r.msg["event"] == event
    ]


@pytest.mark.django_db
def test_cli_retry_and_discard_log_who_did_what(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jobs.failures")
    first, second = failed_rows(2)
    run("retry_failed_jobs", str(first.id))
    run("discard_failed_jobs", str(second.id))
    [retried] = _audit_events(caplog, "failed tasks retried")
    [deleted] = _audit_events(caplog, "tasks deleted")
    assert (retried["count"], retried["job_ids"]) == (1, [first.id])
    assert (deleted["count"], deleted["job_ids"]) == (1, [second.id])
    assert deleted["change_message"] == "Discarded."
    for event in (retried, deleted):
        assert event["user"] is None
        assert event["os_user"] == getpass.getuser()


@pytest.mark.django_db
def test_a_dry_run_and_a_refused_command_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jobs.failures")
    [row] = failed_rows(1)
    run("retry_failed_jobs", "--all", "--dry-run")
    with pytest.raises(CommandError):
        run("discard_failed_jobs", str(row.id), "999999")
    assert _audit_events(caplog, "failed tasks retried") == []
    assert _audit_events(caplog, "tasks deleted") == []
