"""Management commands refuse bad input with a clear message and a non-zero exit code."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from jobs.models import Job
from tests.reliability.support import run_manage

pytestmark = pytest.mark.django_db

BAD_INPUT = [
    (("list_failed_jobs", "--state", "bogus"), "--state must be one of: retrying, dead"),
    (("list_failed_jobs", "--since", "yesterday"), "--since 'yesterday' is not a duration"),
    (("list_failed_jobs", "--limit", "0"), "--limit must be at least 1"),
    (("list_failed_jobs", "--limit", "abc"), "invalid int value: 'abc'"),
    (("retry_failed_jobs",), "Give task ids, or --all"),
    (("retry_failed_jobs", "not-an-id"), "'not-an-id' is not a task id"),
    (("retry_failed_jobs", "--all", "--state", "queued"), "--state must be one of"),
    (("discard_failed_jobs",), "Give task ids, or --all"),
    (("discard_failed_jobs", "--all", "--since", "5x"), "--since '5x' is not a duration"),
    (("discard_failed_jobs", "1;DROP TABLE jobs_job"), "is not a task id"),
    (("qinfo", "--bogus"), "unrecognized arguments: --bogus"),
    (("sync_schedules", "extra"), "unrecognized arguments: extra"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_bad_input_is_a_command_error(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        call_command(*args)
    assert message in str(excinfo.value)


def test_bulk_commands_change_nothing_on_bad_input() -> None:
    Job.objects.create(task_id="a" * 32, queue="tablo", func="x.y", payload="p", state="dead")
    for args in (("discard_failed_jobs",), ("discard_failed_jobs", "--all", "--since", "5x")):
        with pytest.raises(CommandError):
            call_command(*args)
    assert Job.objects.filter(state="dead").count() == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("list_failed_jobs", "--state", "bogus"), 1, "CommandError: --state must be one of"),
        (("retry_failed_jobs", "--limit"), 2, "unrecognized arguments: --limit"),
    ],
)
def test_exit_code_is_non_zero_from_the_shell(args: tuple[str, ...], code: int, message: str):
    result = run_manage(*args)
    assert result.returncode == code
    assert message in result.stderr
