"""jobs.engine.execute: one attempt of a task, run in this process.

Every way a task can end becomes an ``Outcome`` that keeps the exception object
(the retry decision reads its type), texts are cleaned for the database, and the
task package gets django-q2's result fields.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django_q.signals import post_execute_in_worker, pre_execute

from jobs.engine import execute
from jobs.engine.errors import DoNotRetry
from jobs.engine.execute import FunctionNotFound, ResultRefused, TaskTimeout
from tests.support.failures import PaymentDeclined, make_task


class BrokenMessage(Exception):
    def __str__(self) -> str:
        raise ValueError("no message for you")


class Unprintable(Exception):
    """Neither its message nor its traceback can be formatted: both raise what
    ``traceback`` does not catch (not an ``Exception``)."""

    def __str__(self) -> str:
        raise KeyboardInterrupt

    @property
    def __notes__(self) -> list[str]:
        raise KeyboardInterrupt


class Outer:
    class Inner(Exception):
        pass


def returns(value: Any) -> Any:
    return value


def adds(a: int, b: int, *, times: int = 1) -> int:
    return (a + b) * times


def raises(exc: BaseException) -> None:
    raise exc


def exits(code: object) -> None:
    sys.exit(code)


def sleeps_past_its_timeout() -> None:
    # The workload: far longer than the timeout given to run(), which ends it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.01)


def returns_a_function() -> Callable[[], None]:
    return lambda: None


def run(func: object, *args: Any, timeout: float | None = None, **kwargs: Any):
    """Run a task package of ``func`` once: (outcome, the package after the run)."""
    task = make_task(func, *args, **kwargs)
    return execute.run(task, timeout=timeout), task


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a task module into a directory on ``sys.path``: its (fresh) dotted name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"task_module_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def signals() -> Iterator[list[tuple[str, object, dict]]]:
    """What pre_execute and post_execute_in_worker were sent: (signal, func, task copy)."""
    sent: list[tuple[str, object, dict]] = []

    def before(sender, func, task, **kwargs) -> None:
        sent.append(("pre_execute", func, dict(task)))

    def after(sender, func, task, **kwargs) -> None:
        sent.append(("post_execute_in_worker", func, dict(task)))

    pre_execute.connect(before, dispatch_uid="test-execute-pre")
    post_execute_in_worker.connect(after, dispatch_uid="test-execute-post")
    yield sent
    pre_execute.disconnect(dispatch_uid="test-execute-pre")
    post_execute_in_worker.disconnect(dispatch_uid="test-execute-post")


# -- success -------------------------------------------------------------------------
def test_a_success_keeps_the_value_and_sets_the_result_fields_of_the_package() -> None:
    outcome, task = run(adds, 2, 3, times=4)

    assert outcome.success is True
    assert (outcome.value, outcome.error, outcome.error_type) == (20, None, "")
    assert (outcome.message, outcome.traceback, outcome.final) == ("", "", "")
    assert outcome.started_at <= outcome.stopped
    assert outcome.duration >= 0
    assert task["result"] == 20
    assert task["success"] is True
    assert (task["started_at"], task["stopped"]) == (outcome.started_at, outcome.stopped)


def test_a_function_named_by_its_dotted_path_runs() -> None:
    outcome, task = run("tests.jobs.test_execute.adds", 1, 1)

    assert (outcome.success, outcome.value, task["result"]) == (True, 2, 2)


@pytest.mark.parametrize("value", [None, True, 0.5, "text", [1, 2], {"a": 1}])
def test_values_that_pickle_within_the_limit_are_kept(value: Any) -> None:
    outcome, task = run(returns, value)

    assert outcome.success is True
    assert outcome.value == value
    assert task["result"] == value


# -- every way a task can end is an outcome ------------------------------------------
def test_a_raised_exception_is_a_failed_outcome_with_its_message_and_traceback() -> None:
    error = RuntimeError("disk full")
    outcome, task = run(raises, error)

    assert outcome.success is False
    assert outcome.error is error  # the object itself: the retry decision reads its type
    assert (outcome.value, outcome.error_type, outcome.message) == (
        None,
        "RuntimeError",
        "disk full",
    )
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert "in raises" in outcome.traceback
    assert outcome.traceback.endswith("RuntimeError: disk full\n")
    assert outcome.final == ""  # the policy decides
    assert task["success"] is False
    assert task["result"] == f"disk full : {outcome.traceback}"
    assert outcome.result_text == task["result"]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (3, "the task called sys.exit(3)"),
        (None, "the task called sys.exit(None)"),
        ("bye", "the task called sys.exit('bye')"),
    ],
)
def test_sys_exit_in_a_task_is_a_failed_outcome(code: object, message: str) -> None:
    outcome, task = run(exits, code)

    assert outcome.success is False
    assert isinstance(outcome.error, SystemExit)
    assert (outcome.error_type, outcome.message) == ("SystemExit", message)
    assert task["result"].startswith(f"{message} : Traceback")


def test_keyboard_interrupt_in_a_task_is_a_failed_outcome() -> None:
    outcome, _task = run(raises, KeyboardInterrupt())

    assert outcome.success is False
    assert isinstance(outcome.error, KeyboardInterrupt)
    assert (outcome.error_type, outcome.message) == (
        "KeyboardInterrupt",
        "KeyboardInterrupt (no message)",
    )


def test_memory_error_in_a_task_is_a_failed_outcome() -> None:
    outcome, _task = run(raises, MemoryError())

    assert (outcome.success, outcome.error_type) == (False, "MemoryError")
    assert outcome.message == "MemoryError (no message)"
    assert outcome.traceback.endswith("MemoryError\n")


def test_an_exception_whose_message_cannot_be_read_is_a_failed_outcome() -> None:
    outcome, task = run(raises, BrokenMessage())

    assert outcome.success is False
    assert isinstance(outcome.error, BrokenMessage)
    assert outcome.error_type == "tests.jobs.test_execute.BrokenMessage"
    assert outcome.message == (
        "<the exception's message could not be read: str() raised ValueError>"
    )
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert task["result"].startswith(outcome.message)


def test_an_exception_that_cannot_be_formatted_at_all_still_gets_texts() -> None:
    outcome, task = run(raises, Unprintable())

    assert outcome.success is False
    assert isinstance(outcome.error, Unprintable)
    assert outcome.message == (
        "<the exception's message could not be read: str() raised KeyboardInterrupt>"
    )
    assert outcome.traceback == (
        "tests.jobs.test_execute.Unprintable: (the traceback could not be formatted)\n"
    )
    assert task["result"] == f"{outcome.message} : {outcome.traceback}"


@pytest.mark.parametrize(
    "error",
    [DoNotRetry("invalid input"), PaymentDeclined("card declined")],
    ids=["DoNotRetry", "a subclass"],
)
def test_do_not_retry_and_its_subclasses_make_the_outcome_final(error: DoNotRetry) -> None:
    outcome, _task = run(raises, error)

    assert outcome.success is False
    assert outcome.error is error
    assert outcome.final == "do not retry"
    assert outcome.message == str(error)


def test_a_task_that_runs_past_its_timeout_is_ended_with_task_timeout() -> None:
    before = signal.getsignal(signal.SIGALRM)

    outcome, task = run(sleeps_past_its_timeout, timeout=0.1)

    assert outcome.success is False
    assert isinstance(outcome.error, TaskTimeout)
    assert outcome.error_type == "jobs.engine.execute.TaskTimeout"
    assert outcome.message == "the task ran past its timeout of 0.1 s"
    assert outcome.duration < 10  # ended by the alarm, not by its own 30 s deadline
    assert outcome.final == ""  # a timeout is retried by policy
    assert task["result"].startswith("the task ran past its timeout of 0.1 s : ")
    # The alarm is gone with the attempt.
    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_task_within_its_timeout_succeeds_and_leaves_no_alarm() -> None:
    outcome, _task = run(adds, 1, 2, timeout=30)

    assert (outcome.success, outcome.value) == (True, 3)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize(
    "func", ["tests.jobs.test_execute.no_such_function", "no_such_module_anywhere.func", ""]
)
def test_a_function_that_does_not_exist_is_a_final_failure(func: str) -> None:
    outcome, task = run(func)

    assert outcome.success is False
    assert isinstance(outcome.error, FunctionNotFound)
    assert outcome.error_type == "jobs.engine.execute.FunctionNotFound"
    assert outcome.message == f"Function {func} is not defined"
    assert outcome.final == "function not found"
    assert task["success"] is False


def test_a_name_that_is_not_callable_is_a_function_not_found() -> None:
    outcome, _task = run("os.sep")

    assert isinstance(outcome.error, FunctionNotFound)


@pytest.mark.parametrize(
    ("source", "error_type", "message"),
    [
        (
            "import no_such_dependency_of_this_module\n",
            "ModuleNotFoundError",
            "No module named 'no_such_dependency_of_this_module'",
        ),
        (
            "raise ImportError('cannot import name x from y')\n",
            "ImportError",
            "cannot import name x from y",
        ),
        (
            "raise LookupError('TABLO_API_KEY is not set')\n",
            "LookupError",
            "TABLO_API_KEY is not set",
        ),
        ("def func(:\n", "SyntaxError", None),
    ],
    ids=["missing dependency", "import error", "its own error", "syntax error"],
)
def test_an_error_importing_the_tasks_module_is_a_failed_attempt_with_that_error(
    module_dir: Callable[[str], str], source: str, error_type: str, message: str | None
) -> None:
    name = module_dir(source + "\n\ndef func():\n    return 'never'\n")

    outcome, _task = run(f"{name}.func")

    assert outcome.success is False
    assert outcome.error_type == error_type
    assert type(outcome.error).__name__ == error_type  # the module's error, not a wrapper
    if message is not None:
        assert outcome.message == message
    # Not "function not found": fixing the module (a deploy) makes a retry succeed.
    assert outcome.final == ""
    assert name not in sys.modules


def test_a_module_that_imports_runs_its_function(module_dir: Callable[[str], str]) -> None:
    name = module_dir("def func(x):\n    return x * 2\n")

    outcome, _task = run(f"{name}.func", 21)

    assert (outcome.success, outcome.value) == (True, 42)


# -- results that cannot be kept -----------------------------------------------------
def test_a_return_value_that_cannot_be_pickled_is_refused() -> None:
    outcome, task = run(returns_a_function)

    assert outcome.success is False
    assert isinstance(outcome.error, ResultRefused)
    assert outcome.value is None
    assert outcome.message.startswith(
        "the task's return value (function) cannot be pickled, so it cannot be kept as its result: "
    )
    assert isinstance(outcome.error.__cause__, (pickle.PicklingError, AttributeError))
    assert task["result"].startswith(outcome.message)


@pytest.mark.parametrize(
    "value",
    ["x" * 5_000, b"\x00" * 5_000, 1 << 40_000, list(range(2_000))],
    ids=["text", "bytes", "huge int", "list"],
)
def test_a_return_value_over_the_size_limit_is_refused(settings, value: Any) -> None:
    settings.JOBS_RESULT_MAX_BYTES = 1_000
    size = len(pickle.dumps(value, -1))

    outcome, task = run(returns, value)

    assert outcome.success is False
    assert isinstance(outcome.error, ResultRefused)
    assert outcome.value is None
    assert outcome.message == (
        f"the task's return value is {size:,} bytes pickled, over the 1,000-byte limit "
        "(JOBS_RESULT_MAX_BYTES); return less, or store it elsewhere"
    )
    assert task["success"] is False


def test_a_return_value_at_the_size_limit_is_kept(settings) -> None:
    value = "x" * 500
    settings.JOBS_RESULT_MAX_BYTES = len(pickle.dumps(value, -1))

    outcome, _task = run(returns, value)

    assert (outcome.success, outcome.value) == (True, value)


def test_a_size_limit_of_zero_keeps_any_size(settings) -> None:
    settings.JOBS_RESULT_MAX_BYTES = 0
    value = 1 << 80_000

    outcome, _task = run(returns, value)

    assert (outcome.success, outcome.value) == (True, value)


# -- texts for the database ----------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("plain text, été", "plain text, été"),
        ("a\x00b", "a\\x00b"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("both\x00 \udfff", "both\\x00 \\udfff"),
        ("", ""),
    ],
)
def test_clean_escapes_nul_bytes_and_lone_surrogates(text: str, cleaned: str) -> None:
    assert execute.clean(text) == cleaned
    assert "\x00" not in execute.clean(text)
    execute.clean(text).encode("utf-8")  # PostgreSQL takes it


def test_the_texts_of_a_failure_are_cleaned_for_the_database() -> None:
    outcome, task = run(raises, ValueError("bad \x00 byte and \ud83d half an emoji"))

    assert outcome.message == "bad \\x00 byte and \\ud83d half an emoji"
    for text in (outcome.message, outcome.traceback, task["result"]):
        assert "\x00" not in text
        text.encode("utf-8")
    assert "bad \\x00 byte and \\ud83d half an emoji" in outcome.traceback


def test_type_name_is_bare_for_builtins_and_dotted_for_the_rest() -> None:
    assert execute.type_name(ValueError()) == "ValueError"
    assert execute.type_name(SystemExit()) == "SystemExit"
    assert execute.type_name(TaskTimeout()) == "jobs.engine.execute.TaskTimeout"
    assert execute.type_name(Outer.Inner()) == "tests.jobs.test_execute.Outer.Inner"


def test_message_of_says_something_for_every_exception() -> None:
    assert execute.message_of(ValueError("bad")) == "bad"
    assert execute.message_of(ValueError()) == "ValueError (no message)"
    assert execute.message_of(KeyError("k")) == "'k'"
    assert execute.message_of(SystemExit(2)) == "the task called sys.exit(2)"
    assert execute.message_of(BrokenMessage()) == (
        "<the exception's message could not be read: str() raised ValueError>"
    )


def test_traceback_of_formats_the_exception_with_its_cause() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        text = execute.traceback_of(outer)

    assert "KeyError: 'inner'" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert text.endswith("RuntimeError: outer\n")


def test_traceback_of_an_exception_that_was_never_raised_is_its_last_line() -> None:
    assert execute.traceback_of(ValueError("never raised")) == "ValueError: never raised\n"


# -- locate and alarm ----------------------------------------------------------------
def test_locate_finds_a_function_by_path_and_passes_a_callable_through() -> None:
    assert execute.locate("tests.jobs.test_execute.adds") is adds
    assert execute.locate(adds) is adds
    assert execute.locate("os.path.join") is os.path.join


@pytest.mark.parametrize(
    "func", ["", None, "os.sep", "tests.jobs.test_execute.missing", "nowhere_at_all.f", 42]
)
def test_locate_returns_none_for_what_is_not_a_callable(func: object) -> None:
    assert execute.locate(func) is None


def test_locate_raises_the_import_error_of_the_module_itself(
    module_dir: Callable[[str], str],
) -> None:
    name = module_dir("raise OSError('the module could not read its data file')\n")

    with pytest.raises(OSError, match="could not read its data file"):
        execute.locate(f"{name}.func")


def test_alarm_raises_task_timeout_in_this_thread_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGALRM)

    with pytest.raises(TaskTimeout, match=r"past its timeout of 0\.05 s"), execute.alarm(0.05):
        sleeps_past_its_timeout()

    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize("seconds", [None, 0, -1])
def test_alarm_without_a_positive_timeout_sets_nothing(seconds: float | None) -> None:
    before = signal.getsignal(signal.SIGALRM)

    with execute.alarm(seconds):
        assert signal.getsignal(signal.SIGALRM) == before
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


# -- signals -------------------------------------------------------------------------
def test_pre_execute_is_sent_before_the_task_and_post_execute_in_worker_after(
    signals: list[tuple[str, object, dict]],
) -> None:
    def records_signals_seen() -> int:
        return len(signals)

    outcome, task = run(records_signals_seen)

    assert outcome.value == 1  # pre_execute had been sent when the task ran
    assert [(name, func) for name, func, _task in signals] == [
        ("pre_execute", records_signals_seen),
        ("post_execute_in_worker", records_signals_seen),
    ]
    _, _, before = signals[0]
    _, _, after = signals[1]
    assert before["id"] == after["id"] == task["id"]
    assert "success" not in before
    assert (after["success"], after["result"], after["stopped"]) == (True, 1, outcome.stopped)


def test_signals_are_sent_for_a_failure_and_for_a_function_not_found(
    signals: list[tuple[str, object, dict]],
) -> None:
    failed, _ = run(raises, ValueError("x"))
    missing, _ = run("tests.jobs.test_execute.no_such_function")

    assert [(name, func) for name, func, _task in signals] == [
        ("pre_execute", raises),
        ("post_execute_in_worker", raises),
        ("pre_execute", None),
        ("post_execute_in_worker", None),
    ]
    assert signals[1][2]["result"] == failed.result_text
    assert signals[3][2]["result"] == missing.result_text


def test_post_execute_in_worker_carries_the_exception_itself() -> None:
    errors: list[BaseException | None] = []

    def after(sender, task, error, **kwargs) -> None:
        errors.append(error)

    post_execute_in_worker.connect(after, dispatch_uid="test-execute-error")
    try:
        failed, _ = run(raises, ValueError("x"))
        succeeded, _ = run(adds, 1, 2)
    finally:
        post_execute_in_worker.disconnect(dispatch_uid="test-execute-error")

    assert succeeded.success
    assert errors == [failed.error, None]
    assert isinstance(failed.error, ValueError)


def _receiver_raises(**kwargs: Any) -> None:
    raise RuntimeError("a receiver's bug")


def test_a_raising_post_execute_in_worker_receiver_does_not_change_the_outcome() -> None:
    post_execute_in_worker.connect(_receiver_raises, dispatch_uid="test-execute-raises")
    try:
        outcome, task = run(adds, 1, 2)
        failed, failed_task = run(raises, ValueError("the task's own error"))
    finally:
        post_execute_in_worker.disconnect(dispatch_uid="test-execute-raises")

    assert (outcome.success, outcome.value, outcome.error) == (True, 3, None)
    assert (task["success"], task["result"]) == (True, 3)
    assert (failed.error_type, failed.message) == ("ValueError", "the task's own error")
    assert failed_task["result"] == failed.result_text


def test_a_raising_pre_execute_receiver_does_not_change_the_outcome() -> None:
    pre_execute.connect(_receiver_raises, dispatch_uid="test-execute-raises")
    try:
        outcome, task = run(adds, 1, 2)
    finally:
        pre_execute.disconnect(dispatch_uid="test-execute-raises")

    assert (outcome.success, outcome.value, outcome.error) == (True, 3, None)
    assert (task["success"], task["result"]) == (True, 3)
