from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobs import checks
from jobs.engine.registry import JobSpec
from tests.support import runtime as support
from tests.support.brokers import REDIS_URL
from tests.support.cluster import BASE_DIR


def ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


def test_the_project_settings_pass() -> None:
    assert checks.check_q_cluster() == []
    assert checks.check_jobs() == []


def test_retry_not_above_timeout_is_an_error(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 300, "retry": 300}
    [error] = checks.check_q_cluster()
    assert error.id == "jobs.E001"
    assert "runs twice" in error.hint


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


def test_a_job_timeout_at_or_above_retry_is_a_warning_on_the_orm_broker(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = JobSpec(name="tests.long", func=support.echo, timeout=60)
    monkeypatch.setattr(checks.registry, "all_jobs", lambda: [spec])
    orm = {k: v for k, v in settings.Q_CLUSTER.items() if k not in ("broker_class", "redis")}
    settings.Q_CLUSTER = {**orm, "retry": 60}
    [warning] = checks.check_jobs()
    assert (warning.id, warning.obj) == ("jobs.W005", "tests.support.runtime.echo")
    # The project's brokers never hand a live node's task to someone else.
    settings.Q_CLUSTER = {**orm, "retry": 60, "broker_class": "jobs.engine.broker.DatabaseBroker"}
    assert checks.check_jobs() == []
    redis = {"broker_class": "jobs.engine.redis_broker.RedisBroker", "redis": REDIS_URL}
    settings.Q_CLUSTER = {**orm, "retry": 60, **redis}
    assert checks.check_jobs() == []


def test_a_broker_other_than_the_projects_is_a_warning(settings) -> None:
    assert checks.check_broker() == []
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "broker_class": None}
    assert ids(checks.check_broker()) == ["jobs.W006"]
    settings.Q_CLUSTER = {
        **settings.Q_CLUSTER,
        "broker_class": "jobs.engine.redis_broker.RedisBroker",
    }
    settings.Q_CLUSTER.pop("redis", None)
    assert ids(checks.check_broker()) == ["jobs.E004"]
    settings.Q_CLUSTER["redis"] = REDIS_URL
    assert checks.check_broker() == []


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
    env = {**os.environ, "Q_SAVE_LIMIT": "250", "DJANGO_SETTINGS_MODULE": "config.settings"}
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
