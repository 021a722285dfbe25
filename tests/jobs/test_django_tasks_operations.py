"""jobs.django_tasks for operators: a ``@task`` is an ordinary Tablo task (Failed tasks page,
retry and discard, ``list_failed_jobs``, the Overview and ``/metrics``, under its module
path), and the system checks of its configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.tasks import TaskResultStatus, task_backends
from django.utils import timezone

from jobs import checks
from jobs.dashboard import selectors
from jobs.engine import registry
from jobs.engine.worker import Worker
from jobs.models import Job
from tests.support import django_tasks as tasks
from tests.support.admin import url
from tests.support.cluster import BASE_DIR

PATH = "tests.support.django_tasks.fails_until"
QUEUE = tasks.TEST_QUEUE


@pytest.fixture(autouse=True)
def _tasks_settings(settings) -> None:
    settings.TASKS = tasks.backend_settings()


def dead_task(worker: Worker) -> str:
    """A ``fails_until`` task dead after its 4 attempts (it would succeed at the 5th)."""
    result = tasks.fails_until.using(queue_name=QUEUE).enqueue(5)
    dead = Job.objects.filter(task_id=result.id, state=Job.State.DEAD)
    tasks.drain(worker, until=dead.exists)
    return result.id


@pytest.mark.django_db(transaction=True)
def test_the_failed_tasks_page_shows_it_and_a_retry_makes_it_succeed(
    admin_client, tasks_worker: Worker
) -> None:
    task_id = dead_task(tasks_worker)
    job = Job.objects.get(task_id=task_id)
    listing = admin_client.get(url("admin:jobs_failedjob_changelist")).content.decode()
    assert PATH in listing
    assert "4 of 4" in listing
    detail = admin_client.get(url("admin:jobs_failedjob_change", job.id)).content.decode()
    assert "attempt 4 fails on purpose" in detail

    assert admin_client.post(url("admin:jobs_failedjob_retry", job.id)).status_code == 302
    result = tasks.fails_until.get_result(task_id)
    assert result.status == TaskResultStatus.READY
    tasks.drain(tasks_worker, until=lambda: not Job.objects.filter(task_id=task_id).exists())
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)
    assert len(result.errors) == 4
    assert len(result.worker_ids) == 5


@pytest.mark.django_db(transaction=True)
def test_discard_leaves_a_failed_result(admin_client, tasks_worker: Worker) -> None:
    task_id = dead_task(tasks_worker)
    job = Job.objects.get(task_id=task_id)
    assert admin_client.post(url("admin:jobs_failedjob_discard", job.id)).status_code == 302
    assert not Job.objects.filter(task_id=task_id).exists()
    result = tasks.fails_until.get_result(task_id)
    assert result.status == TaskResultStatus.FAILED
    assert (result.args, len(result.errors)) == ([5], 4)


@pytest.mark.django_db(transaction=True)
def test_list_failed_jobs_names_its_path(tasks_worker: Worker) -> None:
    task_id = dead_task(tasks_worker)
    out = StringIO()
    call_command("list_failed_jobs", "--json", stdout=out)
    assert f'"func": "{PATH}"' in out.getvalue()
    assert task_id in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_overview_and_metrics_count_it_under_its_path(
    client, admin_client, settings, tasks_worker: Worker
) -> None:
    tasks.add.using(queue_name=QUEUE).enqueue(1, 2)
    dead_task(tasks_worker)
    tasks_worker.close()  # writes the run counts
    rows = {row["name"]: row for row in selectors.job_table(now=timezone.now())}
    assert (rows[PATH]["runs"], rows[PATH]["failures"]) == (4, 4)
    assert rows["tests.support.django_tasks.add"]["runs"] == 1
    overview = admin_client.get(url("admin:jobs_overview_changelist")).content.decode()
    assert f'href="/admin/jobs/failedjob/?func={PATH}"' in overview

    settings.METRICS_TOKEN = "metrics-test-token-0123456789"
    body = client.get(
        "/metrics", headers={"Authorization": "Bearer metrics-test-token-0123456789"}
    ).content.decode()
    assert (
        f'tablo_tasks_finished_total{{job="{PATH}",outcome="failed",queue="{QUEUE}"}} 4.0' in body
    )
    assert f'tablo_tasks_dead{{queue="{QUEUE}"}} 1.0' in body


# -- system checks ----------------------------------------------------------------------
def ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


def test_the_project_settings_pass(settings) -> None:
    settings.TASKS = tasks.backend_settings()
    settings.TASKS["default"]["QUEUES"] = ["default"]
    assert task_backends["default"].check() == []
    assert checks.check_task_backends() == []


def test_a_queue_no_worker_is_expected_to_serve_is_a_warning(settings) -> None:
    settings.TASKS = tasks.backend_settings()
    settings.TASKS["default"]["QUEUES"] = ["default", "reprots"]
    [warning] = task_backends["default"].check()
    assert warning.id == "jobs.W201"
    assert "'reprots'" in warning.msg
    assert "Q_CLUSTER_NAME=reprots" in warning.hint


def test_a_queue_a_declared_job_runs_on_is_known(settings) -> None:
    registry.job("tests.django_tasks.on_reports", cluster="reports")(tasks.add.func)
    try:
        settings.TASKS = tasks.backend_settings()
        settings.TASKS["default"]["QUEUES"] = ["default", "reports"]
        assert task_backends["default"].check() == []
    finally:
        registry.unregister("tests.django_tasks.on_reports")
        tasks.add.using(priority=1)  # the @task's own registration again


def test_bad_options_are_an_error_not_a_traceback(settings) -> None:
    settings.TASKS = tasks.backend_settings(tasks={PATH: {"retries": 3}})
    settings.TASKS["default"]["QUEUES"] = ["default"]
    [error] = task_backends["default"].check()
    assert error.id == "jobs.E201"
    assert "has unknown keys ['retries']" in error.msg


def test_a_table_entry_that_is_no_task_is_a_warning(settings) -> None:
    settings.TASKS = tasks.backend_settings(tasks={"tests.support.django_tasks.nope": {}})
    settings.TASKS["default"]["QUEUES"] = ["default"]
    [warning] = task_backends["default"].check()
    assert warning.id == "jobs.W202"


@pytest.mark.parametrize("backend", sorted(checks.INLINE_TASK_BACKENDS))
def test_an_inline_backend_in_production_is_a_warning(settings, backend: str) -> None:
    settings.TASKS = {"default": {"BACKEND": backend}}
    settings.DEBUG = False
    [warning] = checks.check_task_backends()
    assert warning.id == "jobs.W203"
    settings.DEBUG = True
    assert checks.check_task_backends() == []


def test_manage_py_check_reports_an_unknown_queue_from_the_environment() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "TASKS_QUEUES": "default,typo",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "jobs.W201" in done.stderr + done.stdout
    assert "'typo'" in done.stderr + done.stdout
