from __future__ import annotations

import importlib
import logging
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.engine import backend, djangoq, registry
from jobs.engine.errors import DoNotRetry
from jobs.failures import hook
from jobs.models import Job, JobAttempt
from tests.support.failures import (
    PaymentDeclined,
    failed_result,
    finished,
    queue_job,
)

ALWAYS_FAILS = "tests.support.failures.always_fails"


def failure_events(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [
        r.msg
        for r in caplog.records
        if r.name == "jobs.failures" and isinstance(r.msg, dict) and r.msg["event"] == "task failed"
    ]


# --- parsing django-q2's result text ----------------------------------------


def test_parse_builtin_exception() -> None:
    parsed = djangoq.parse_result(failed_result(RuntimeError("disk full: 3 files")))
    assert parsed.error_type == "RuntimeError"
    assert parsed.message == "disk full: 3 files"
    assert parsed.traceback.startswith("Traceback (most recent call last):")
    assert parsed.traceback.rstrip().endswith("RuntimeError: disk full: 3 files")


def test_parse_project_exception_is_dotted() -> None:
    parsed = djangoq.parse_result(failed_result(PaymentDeclined("card refused")))
    assert parsed.error_type == "tests.support.failures.PaymentDeclined"
    assert parsed.message == "card refused"


def test_parse_message_containing_separator_and_newlines() -> None:
    parsed = djangoq.parse_result(failed_result(ValueError("a : b\nsecond line")))
    assert parsed.error_type == "ValueError"
    assert parsed.message == "a : b\nsecond line"


def test_parse_empty_message() -> None:
    parsed = djangoq.parse_result(failed_result(KeyboardInterrupt()))
    assert parsed.error_type == "KeyboardInterrupt"
    assert parsed.message == ""


def test_parse_chained_exception_takes_the_raised_one() -> None:
    def chained() -> None:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise DoNotRetry("outer") from exc

    try:
        chained()
    except DoNotRetry as exc:
        result = failed_result(exc)
    parsed = djangoq.parse_result(result)
    assert parsed.error_type == "jobs.engine.errors.DoNotRetry"
    assert parsed.message == "outer"


def test_parse_text_without_traceback() -> None:
    parsed = djangoq.parse_result("something odd")
    assert (parsed.error_type, parsed.message, parsed.traceback) == (
        "UnknownError",
        "something odd",
        "",
    )


def test_parse_non_string_result() -> None:
    assert djangoq.parse_result(None).message == "None"


def test_do_not_retry_subclasses_are_recognised() -> None:
    assert hook.is_do_not_retry("jobs.engine.errors.DoNotRetry")
    assert hook.is_do_not_retry("tests.support.failures.PaymentDeclined")
    assert not hook.is_do_not_retry("RuntimeError")
    assert not hook.is_do_not_retry("no.such.module.Error")


# --- the hook on post_execute ------------------------------------------------


@pytest.mark.django_db
def test_failure_schedules_a_retry_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    row, task = queue_job(ALWAYS_FAILS, "x", attempt=1)
    before = timezone.now()
    hook.on_post_execute(task=finished(task, exc=RuntimeError("boom x"), attempt=1))

    row.refresh_from_db()
    assert row.state == Job.State.RETRYING
    # attempt 1: 1 s +/-10%
    assert before + timedelta(seconds=0.85) <= row.run_at <= timezone.now() + timedelta(seconds=1.2)
    assert row.last_error_type == "RuntimeError"
    assert row.last_error_message == "boom x"
    assert row.error_signature == "RuntimeError: boom x"
    assert row.first_failed_at == row.last_failed_at

    attempt = JobAttempt.objects.get(task_id=row.task_id)
    assert (attempt.attempt, attempt.succeeded, attempt.error_type) == (1, False, "RuntimeError")
    assert (attempt.cluster, attempt.host, attempt.pid) == ("test-cluster", "test-host", 4242)
    assert "RuntimeError: boom x" in attempt.traceback
    assert attempt.started_at is not None

    [event] = failure_events(caplog)
    assert event["task_id"] == row.task_id
    assert event["task_name"] == task["name"]
    assert event["job"] == "tests.always_fails"
    assert event["func"] == ALWAYS_FAILS
    assert (event["attempt"], event["max_attempts"]) == (1, 3)
    assert event["will_retry"] is True
    assert event["retry_at"] == row.run_at.isoformat()
    assert event["error_type"] == "RuntimeError"
    assert event["error_message"] == "boom x"
    assert "Traceback (most recent call last)" in event["traceback"]


@pytest.mark.django_db
def test_last_attempt_makes_the_task_dead(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    row, task = queue_job(ALWAYS_FAILS, attempt=3)
    hook.on_post_execute(task=finished(task, exc=RuntimeError("boom"), attempt=3))
    row.refresh_from_db()
    assert row.state == Job.State.DEAD
    [event] = failure_events(caplog)
    assert (event["will_retry"], event["retry_at"], event["gave_up"]) == (
        False,
        None,
        "max attempts reached",
    )


@pytest.mark.django_db
def test_history_keeps_every_attempt() -> None:
    row, task = queue_job(ALWAYS_FAILS, attempt=1)
    for attempt in (1, 2, 3):
        Job.objects.filter(id=row.id).update(attempt=attempt, state=Job.State.RUNNING)
        hook.on_post_execute(
            task=finished(task, exc=RuntimeError(f"try {attempt}"), attempt=attempt)
        )
    history = list(JobAttempt.objects.filter(task_id=row.task_id).order_by("attempt"))
    assert [(a.attempt, a.error_message) for a in history] == [
        (1, "try 1"),
        (2, "try 2"),
        (3, "try 3"),
    ]
    row.refresh_from_db()
    assert row.state == Job.State.DEAD
    assert row.first_failed_at < row.last_failed_at


@pytest.mark.django_db
def test_growing_delays() -> None:
    row, task = queue_job(ALWAYS_FAILS, attempt=1)
    Job.objects.filter(id=row.id).update(max_attempts=10)
    delays = []
    for attempt in (1, 2, 3):
        Job.objects.filter(id=row.id).update(attempt=attempt, state=Job.State.RUNNING)
        done = finished(task, exc=RuntimeError("boom"), attempt=attempt)
        hook.on_post_execute(task=done)
        row.refresh_from_db()
        delays.append((row.run_at - row.last_failed_at).total_seconds())
    assert 0.9 <= delays[0] <= 1.1
    assert 16 * 0.9 <= delays[1] <= 16 * 1.1
    assert 81 * 0.9 <= delays[2] <= 81 * 1.1


@pytest.mark.django_db
def test_per_job_backoff_and_max_attempts() -> None:
    row, task = queue_job("tests.support.failures.custom_policy", attempt=1)
    assert row.max_attempts == 2
    hook.on_post_execute(task=finished(task, exc=ValueError("custom"), attempt=1))
    row.refresh_from_db()
    assert row.state == Job.State.RETRYING
    assert (row.run_at - row.last_failed_at).total_seconds() == 7
    Job.objects.filter(id=row.id).update(attempt=2, state=Job.State.RUNNING)
    hook.on_post_execute(task=finished(task, exc=ValueError("custom"), attempt=2))
    row.refresh_from_db()
    assert row.state == Job.State.DEAD


@pytest.mark.django_db
@pytest.mark.parametrize(
    "exc", [DoNotRetry("invalid input"), PaymentDeclined("card refused")], ids=["base", "subclass"]
)
def test_do_not_retry_gives_up_at_once(exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    row, task = queue_job("tests.support.failures.gives_up", attempt=1)
    hook.on_post_execute(task=finished(task, exc=exc, attempt=1))
    row.refresh_from_db()
    assert row.state == Job.State.DEAD
    assert failure_events(caplog)[0]["gave_up"] == "do not retry"


@pytest.mark.django_db
def test_missing_function_is_dead_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    row, task = queue_job("tests.support.failures.renamed_away", attempt=1)
    missing = ValueError(f"Function {task['func']} is not defined")
    hook.on_post_execute(task=finished(task, exc=missing, attempt=1))
    row.refresh_from_db()
    assert row.state == Job.State.DEAD
    assert row.last_error_message == "Function tests.support.failures.renamed_away is not defined"
    assert failure_events(caplog)[0]["gave_up"] == "function not found"


@pytest.mark.django_db
def test_attempt_falls_back_to_the_queue_row() -> None:
    row, task = queue_job(ALWAYS_FAILS, attempt=2)
    done = finished(task, exc=RuntimeError("boom"), attempt=2)
    del done["attempt"]
    hook.on_post_execute(task=done)
    assert JobAttempt.objects.get(task_id=row.task_id).attempt == 2


@pytest.mark.django_db
def test_late_report_of_an_old_attempt_does_not_touch_a_newer_claim(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    row, task = queue_job(ALWAYS_FAILS, attempt=2)
    hook.on_post_execute(task=finished(task, exc=RuntimeError("old"), attempt=1))
    row.refresh_from_db()
    assert row.state == Job.State.RUNNING
    [event] = failure_events(caplog)
    assert (event["stale"], event["will_retry"]) == (True, False)
    assert JobAttempt.objects.filter(task_id=row.task_id, attempt=1).exists()


@pytest.mark.django_db
def test_task_without_a_queue_row_is_logged_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    task = {"id": "f" * 32, "name": "n", "func": "tests.support.failures.unregistered_failure"}
    hook.on_post_execute(task=finished(task, exc=KeyError("missing"), attempt=1))
    [event] = failure_events(caplog)
    assert (event["will_retry"], event["gave_up"], event["error_type"]) == (
        False,
        "no queue row",
        "KeyError",
    )
    assert JobAttempt.objects.filter(task_id="f" * 32).count() == 1


@pytest.mark.django_db
def test_success_after_failures_closes_the_history() -> None:
    row, task = queue_job(ALWAYS_FAILS, attempt=2)
    hook.on_post_execute(task=finished(task, exc=None, attempt=2))
    attempt = JobAttempt.objects.get(task_id=row.task_id)
    assert (attempt.attempt, attempt.succeeded, attempt.job_name) == (2, True, "tests.always_fails")


@pytest.mark.django_db
def test_first_success_writes_nothing(django_assert_num_queries) -> None:
    _row, task = queue_job(ALWAYS_FAILS, attempt=1)
    with django_assert_num_queries(0):
        hook.on_post_execute(task=finished(task, exc=None, attempt=1))


@pytest.mark.django_db
def test_hook_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("database went away")

    monkeypatch.setattr(backend.DatabaseBackend, "record_failure", broken)
    _row, task = queue_job(ALWAYS_FAILS, attempt=1)
    hook.on_post_execute(task=finished(task, exc=RuntimeError("boom"), attempt=1))
    assert any(
        isinstance(r.msg, dict) and r.msg["event"] == "failure hook error" for r in caplog.records
    )


def test_connected_to_post_execute() -> None:
    from django_q.signals import post_execute

    assert any(
        receiver() is hook.on_post_execute
        for _key, receiver in ((k, r) for k, r, *_ in post_execute.receivers)
    )


@pytest.mark.django_db
def test_an_unregistered_builtin_is_named_by_its_dotted_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import math

    caplog.set_level(logging.INFO)
    row, task = queue_job("math.sqrt", -1, attempt=1)
    task["func"] = math.sqrt  # async_task(math.sqrt, ...) pickles the function itself
    hook.on_post_execute(task=finished(task, exc=ValueError("math domain error"), attempt=1))
    [event] = failure_events(caplog)
    # The runtime's task started/finished name it the same way: never a repr, never empty.
    assert (event["job"], event["func"]) == ("math.sqrt", "math.sqrt")
    assert JobAttempt.objects.get(task_id=row.task_id).func == "math.sqrt"


def test_a_type_named_in_a_traceback_is_never_imported(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "tablo_side_effect.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from jobs.engine.errors import DoNotRetry\n"
        "class Boom(DoNotRetry):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tablo_side_effect", raising=False)
    assert not hook.is_do_not_retry("tablo_side_effect.Boom")
    assert "tablo_side_effect" not in sys.modules
    assert not marker.exists()
    # Once the module is loaded (the job's own module, by spec_for) its types count.
    importlib.import_module("tablo_side_effect")
    assert hook.is_do_not_retry("tablo_side_effect.Boom")
    monkeypatch.delitem(sys.modules, "tablo_side_effect")


@pytest.mark.django_db
def test_a_job_module_that_fails_to_import_is_logged(
    tmp_path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "tablo_broken_jobs.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    row, task = queue_job("tablo_broken_jobs.work", attempt=1)
    hook.on_post_execute(task=finished(task, exc=RuntimeError("boom"), attempt=1))
    [event] = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "job module import failed"
    ]
    assert event["func"] == "tablo_broken_jobs.work"
    assert event["error"] == "ImportError: needs libfoo"
    assert event["level"] == "error"
    # The attempt is still recorded, with the default budget.
    assert JobAttempt.objects.filter(task_id=row.task_id).count() == 1


def test_a_function_that_is_gone_has_no_spec_and_logs_nothing(caplog) -> None:
    assert registry.spec_for("tests.support.failures.no_such_function") is None
    assert registry.spec_for("no_such_module_anywhere.f") is None
    assert not [r for r in caplog.records if "job module import failed" in str(r.msg)]
