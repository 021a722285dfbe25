from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobs import checks
from tests.support.cluster import BASE_DIR


def ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


def test_the_project_settings_pass() -> None:
    assert checks.check_q_cluster() == []
    assert checks.check_jobs() == []


def test_django_q_retry_counting_is_an_error(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "max_attempts": 3}
    assert ids(checks.check_q_cluster()) == ["jobs.E002"]
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "max_attempts": 0, "ack_failures": True}
    assert ids(checks.check_q_cluster()) == ["jobs.E002"]


def test_queue_on_another_database_is_an_error(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "orm": "queue"}
    assert ids(checks.check_q_cluster()) == ["jobs.E003"]


def test_sync_in_production_and_catch_up_are_warnings(settings) -> None:
    settings.DEBUG = False
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True, "catch_up": True}
    assert ids(checks.check_q_cluster()) == ["jobs.W001", "jobs.W002"]


def test_a_broker_other_than_the_projects_is_a_warning(settings) -> None:
    assert checks.check_broker() == []
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "broker_class": None}
    [warning] = checks.check_broker()
    assert warning.id == "jobs.W006"
    assert "never run" in warning.hint


def test_a_heartbeat_interval_in_seconds_is_rounded_up_with_a_warning(settings) -> None:
    settings.HEARTBEAT_INTERVAL_SECONDS = 90
    [warning] = checks.check_jobs()
    assert warning.id == "jobs.W003"
    assert "every 120 s" in warning.msg


def test_a_save_limit_other_than_0_is_a_warning(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "save_limit": 250}
    [warning] = checks.check_q_cluster()
    assert warning.id == "jobs.W007"
    assert "JOBS_RESULTS_MAX_ROWS" in warning.hint


def test_a_retired_variable_in_the_environment_is_named_by_check() -> None:
    env = {
        **os.environ,
        "Q_SAVE_LIMIT": "250",
        "QUEUE_REDIS_URL": "redis://queue:6379/0",
        "Q_RETRY": "400",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr  # a warning, not an error
    assert "jobs.W008" in done.stderr
    assert "Q_SAVE_LIMIT is set in the environment but no longer read" in done.stderr
    assert "QUEUE_REDIS_URL is set in the environment but no longer read" in done.stderr
    assert "The queue lives in the database now" in done.stderr
    assert "Q_RETRY is set in the environment but no longer read" in done.stderr


@pytest.mark.parametrize("limit", [0, -2])
def test_a_queue_limit_that_allows_nothing_is_an_error(settings, limit: int) -> None:
    settings.JOBS_QUEUE_CONCURRENCY = {"reports": limit, "default": 4}
    [error] = checks.check_jobs()
    assert error.id == "jobs.E004"
    assert "'reports'" in error.msg
