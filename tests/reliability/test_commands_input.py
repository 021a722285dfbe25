"""Management commands refuse bad input with a clear message and a non-zero exit code."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from jobs.models import Job
from tests.reliability.support import run_manage
from tests.support.failures import failed_rows

pytestmark = pytest.mark.django_db

FAILED_COMMANDS = ("list_failed_jobs", "retry_failed_jobs --all", "discard_failed_jobs --all")
OUT_OF_RANGE = "is out of range: give a duration from 1s to 3650d"
# Hostile values for every option of the failed-jobs commands: huge, zero, negative,
# other scripts' digits, NUL and other control bytes, very long, wrong type.
HOSTILE = [
    (("--since", "1000000d"), OUT_OF_RANGE),
    (("--since", "99999999999d"), OUT_OF_RANGE),
    (("--since", "1" + "0" * 40 + "s"), OUT_OF_RANGE),
    (("--since", "0m"), OUT_OF_RANGE),
    (("--since", "-2h"), "--since '-2h' is not a duration"),
    (("--since", "\u0661h"), "is not a duration"),
    (("--since", "\u00b2d"), "is not a duration"),
    (("--error", "disk\x00full"), "--error contains a control character (such as NUL)"),
    (("--error", "x" * 1001), "--error is too long: at most 1000 characters."),
    (("--func", "a\x00b"), "--func contains a control character"),
    (("--error-type", "E" * 5000), "--error-type is too long"),
    (("--state", "dead\x00"), "--state contains a control character"),
    (("--error", "\udcff"), "--error is not valid UTF-8 text"),
]
LIMITS = [
    ("100000000000000000000", "--limit must be a whole number from 1 to 10000"),
    ("10001", "--limit must be a whole number from 1 to 10000"),
    ("-1", "--limit must be a whole number from 1 to 10000 (got '-1')."),
    ("\u0661", "--limit must be a whole number from 1 to 10000"),
    ("1.5", "--limit must be a whole number from 1 to 10000"),
]
IDS = ["\u00b2", "\u0661", "-1", "99999999999999999999", "9223372036854775808", "1\x00", "1\n"]

BAD_INPUT = [
    (("list_failed_jobs", "--state", "bogus"), "--state must be one of: retrying, dead"),
    (("list_failed_jobs", "--since", "yesterday"), "--since 'yesterday' is not a duration"),
    (("list_failed_jobs", "--limit", "0"), "--limit must be a whole number from 1 to 10000"),
    (("list_failed_jobs", "--limit", "abc"), "--limit must be a whole number from 1 to 10000"),
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


@pytest.mark.parametrize("command", FAILED_COMMANDS)
@pytest.mark.parametrize(("option", "message"), HOSTILE, ids=lambda v: repr(v)[:30])
def test_hostile_filter_values_are_refused_and_change_nothing(
    command: str, option: tuple[str, str], message: str
) -> None:
    [dead] = failed_rows(1)
    with pytest.raises(CommandError) as excinfo:
        call_command(*command.split(), *option)
    assert message in str(excinfo.value)
    assert Job.objects.get(id=dead.id).state == "dead"


@pytest.mark.parametrize(("value", "message"), LIMITS)
def test_hostile_limits_are_refused(value: str, message: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        call_command("list_failed_jobs", "--limit", value)
    assert message in str(excinfo.value)


@pytest.mark.parametrize("command", ["retry_failed_jobs", "discard_failed_jobs"])
@pytest.mark.parametrize("value", IDS, ids=ascii)
def test_ids_must_be_ascii_digits_within_bigint(command: str, value: str) -> None:
    # Task 1 exists: an Arabic-Indic "1" must not act on it.
    [dead] = failed_rows(1)
    Job.objects.filter(id=dead.id).update(id=1)
    with pytest.raises(CommandError) as excinfo:
        call_command(command, value)
    assert "is not a task id (the numeric id list_failed_jobs shows)." in str(excinfo.value)
    assert Job.objects.get(id=1).state == "dead"


@pytest.mark.parametrize(
    "args",
    [
        ("list_failed_jobs", "--limit", "100000000000000000000"),
        ("list_failed_jobs", "--since", "-2h"),
        ("retry_failed_jobs", "--all", "--since", "1000000d"),
        ("retry_failed_jobs", "\u00b2"),
        ("discard_failed_jobs", "--all", "--error", "a\x01b"),
    ],
    ids=ascii,
)
def test_hostile_input_from_the_shell_exits_1_without_a_traceback(args: tuple[str, ...]) -> None:
    result = run_manage(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: ")
    assert "Traceback" not in result.stderr
