"""Cancel: a waiting task ends at once, a running one is asked to stop and, after its
grace, stopped by force; from the admin, ``cancel_jobs`` and the Overview.

The real-cluster tests run two worker processes on one node: the task next to the
cancelled one must finish untouched.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from jobs import audit
from jobs.engine import nodes, registry, transitions
from jobs.models import Job, JobAttempt, QueuedJob
from jobs.queued.services import cancel_jobs
from tests.support import flow_jobs  # noqa: F401 (registers the jobs)
from tests.support.admin import messages_of, url
from tests.support.runtime import log_events
from tests.support.waiting import wait_until

CHANGELIST = "admin:jobs_queuedjob_changelist"
QUEUE = "flow-cancel"


def _row(task_id: str) -> Job:
    return Job.objects.get(task_id=task_id)


def _claimed(*task_ids: str) -> int:
    """The tasks' rows claimed (running, not started) by a node of this process."""
    node = nodes.register(cluster=QUEUE, managed=False)
    claimed = transitions.claim(alias="default", queue=QUEUE, node=node, by="w@h:1", limit=10)
    assert {c.row_id for c in claimed} >= {_row(t).id for t in task_ids}
    return node


def _queued(n: int) -> list[str]:
    return [
        registry.enqueue("tests.flow.steady", "/nonexistent", 0, on_commit=False) for _ in range(n)
    ]


def _to_queue(*task_ids: str, queue: str = QUEUE) -> None:
    Job.objects.filter(task_id__in=task_ids).update(queue=queue)


# -- the transitions, in process ---------------------------------------------------------
@pytest.mark.django_db
def test_a_queued_task_is_cancelled_at_once_with_who_and_when() -> None:
    [task_id] = _queued(1)
    before = timezone.now()
    done = cancel_jobs(queryset=Job.objects.filter(task_id=task_id), grace=5)
    job = _row(task_id)
    assert (done.cancelled, done.requested) == ([job.id], [])
    assert job.state == Job.State.CANCELLED
    assert job.cancelled_by == audit.operator(None)
    assert job.last_failed_at is not None
    assert job.last_failed_at >= before
    assert job.last_error_type == "Cancelled"
    assert job.last_error_message == f"cancelled by {audit.operator(None)}"
    # Never claimed again, and a second cancel changes nothing.
    _to_queue(task_id)
    node = nodes.register(cluster=QUEUE, managed=False)
    assert transitions.claim(alias="default", queue=QUEUE, node=node, by="w", limit=5) == []
    assert cancel_jobs(queryset=Job.objects.filter(task_id=task_id)).count == 0


@pytest.mark.django_db
def test_a_running_task_is_asked_to_stop_and_its_node_learns_it() -> None:
    [task_id] = _queued(1)
    _to_queue(task_id)
    node = _claimed(task_id)
    job = _row(task_id)
    done = cancel_jobs(queryset=Job.objects.filter(id=job.id), grace=7)
    assert (done.cancelled, done.requested) == ([], [job.id])
    job.refresh_from_db()
    assert (job.state, job.cancel_grace) == (Job.State.RUNNING, 7)
    assert job.cancel_requested_at is not None
    assert transitions.cancel_requests(alias="default", node=node) == {job.id: 7}
    # Claimed and not started: its worker cancels it instead of starting it.
    assert transitions.cancel_unstarted(alias="default", row_id=job.id, node=node)
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert transitions.cancel_requests(alias="default", node=node) == {}


@pytest.mark.django_db
def test_a_cancelled_task_whose_attempt_fails_or_whose_node_dies_ends_cancelled() -> None:
    failed, lost = _queued(2)
    _to_queue(failed, lost)
    node = _claimed(failed, lost)
    for task_id in (failed, lost):
        assert transitions.start(alias="default", row_id=_row(task_id).id, node=node) == 1
    cancel_jobs(queryset=Job.objects.filter(task_id__in=[failed, lost]), grace=30)
    assert transitions.fail(
        task_id=failed, attempt=1, error_type="RuntimeError", error_message="boom",
        retry_at=timezone.now(), owner=node,
    )  # fmt: skip
    nodes.declare_dead(node, why="test")
    for task_id, ended in ((failed, "RuntimeError"), (lost, "WorkerLost")):
        job = _row(task_id)
        assert job.state == Job.State.CANCELLED, task_id
        assert job.last_error_message.endswith(f"(its attempt ended with {ended})")
        assert JobAttempt.objects.get(task_id=task_id).error_type == ended


@pytest.mark.django_db
def test_a_retry_of_a_cancelled_task_runs_it_again() -> None:
    [task_id] = _queued(1)
    cancel_jobs(queryset=Job.objects.filter(task_id=task_id))
    call_command("retry_failed_jobs", str(_row(task_id).id), stdout=StringIO())
    job = _row(task_id)
    assert (job.state, job.cancel_requested_at) == (Job.State.QUEUED, None)


@pytest.mark.django_db
def test_cancelled_tasks_are_listed_with_the_failures_and_in_healthz(client: Client) -> None:
    [task_id] = _queued(1)
    cancel_jobs(queryset=Job.objects.filter(task_id=task_id))
    out = StringIO()
    call_command("list_failed_jobs", "--state", "cancelled", "--json", stdout=out)
    [listed] = json.loads(out.getvalue())
    assert (listed["task_id"], listed["state"], listed["error_type"]) == (
        task_id,
        "cancelled",
        "Cancelled",
    )
    body = client.get("/healthz").json()
    assert body["cancelled"]["count"] == 1
    assert body["expired"]["count"] == 0


# -- the command -----------------------------------------------------------------------
def _table(jobs: list[Job]) -> list[str]:
    """The expected table, column widths included (the command's own layout)."""
    header = ("ID", "NAME", "FUNCTION", "STATE", "ATTEMPTS", "CREATED (UTC)")
    rows = [
        (str(j.id), j.job_name, j.func, j.state, f"{j.attempt}/{j.max_attempts}",
         j.created_at.strftime("%Y-%m-%d %H:%M:%S"))
        for j in jobs
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]  # fmt: skip


@pytest.mark.django_db
def test_cancel_jobs_dry_run_prints_the_tasks_and_changes_nothing() -> None:
    waiting, running = _queued(2)
    _to_queue(running)
    _claimed(running)
    out = StringIO()
    call_command("cancel_jobs", "--all", "--dry-run", "--grace", "9", stdout=out)
    jobs = [_row(waiting), _row(running)]
    assert out.getvalue().splitlines() == [
        *_table(jobs),
        "Would cancel 2 tasks (1 running: asked to stop, killed after 9 s).",
    ]
    assert {j.state for j in Job.objects.all()} == {Job.State.QUEUED, Job.State.RUNNING}


@pytest.mark.django_db
def test_cancel_jobs_cancels_by_id_and_by_filter_with_exact_output() -> None:
    first, second, third = _queued(3)
    _to_queue(third)
    _claimed(third)
    out = StringIO()
    call_command("cancel_jobs", str(_row(first).id), "--grace", "4", stdout=out)
    assert out.getvalue() == "Cancelled 1 task.\n"
    out = StringIO()
    call_command("cancel_jobs", "--all", "--state", "running", "--grace", "4", stdout=out)
    assert (
        out.getvalue()
        == "Cancelled 0 tasks; asked 1 running task to stop (stopped by force after 4 s).\n"
    )
    out = StringIO()
    call_command("cancel_jobs", "--all", "--json", "--func", "tests.flow.steady", stdout=out)
    assert json.loads(out.getvalue()) == {
        "dry_run": False,
        "cancelled": [_row(second).id],
        # Already asked: asked again (it is still running), with the new grace.
        "stop_requested": [_row(third).id],
        "grace_seconds": 30,
    }
    assert _row(third).cancel_grace == 30


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "Give task ids, or --all (with optional filters) to cancel every match."),
        (["1", "--all"], "Give task ids or --all, not both."),
        (["1", "--state", "queued"], "Filters only apply with --all."),
        (
            ["--all", "--state", "dead"],
            "--state must be one of: queued, retrying, running (got 'dead').",
        ),
        (
            ["--all", "--grace", "-1"],
            "--grace: the grace must be whole seconds from 0 to 86400 (got '-1').",
        ),
        (
            ["--all", "--grace", "1e3"],
            "--grace: the grace must be whole seconds from 0 to 86400 (got '1e3').",
        ),
        (
            ["--all", "--since", "2x"],
            "--since '2x' is not a duration: use a number and a unit, like 30m, 2h or 7d.",
        ),
        (
            ["--all", "--batch", "x1"],
            "'x1' is not a task id (the numeric id list_failed_jobs shows).",
        ),
        (
            ["999999"],
            "Not queued, retrying or running (unknown, or ended): 999999. Nothing was changed.",
        ),
    ],
)
def test_cancel_jobs_refuses_bad_input_and_changes_nothing(argv: list[str], message: str) -> None:
    [task_id] = _queued(1)
    with pytest.raises(CommandError) as raised:
        call_command("cancel_jobs", *argv, stdout=StringIO())
    assert str(raised.value) == message
    assert _row(task_id).state == Job.State.QUEUED


@pytest.mark.django_db
def test_cancel_jobs_refuses_an_ended_task_by_id() -> None:
    [task_id] = _queued(1)
    cancel_jobs(queryset=Job.objects.filter(task_id=task_id))
    row_id = _row(task_id).id
    with pytest.raises(CommandError) as raised:
        call_command("cancel_jobs", str(row_id), stdout=StringIO())
    assert str(raised.value) == (
        f"Not queued, retrying or running (unknown, or ended): {row_id}. Nothing was changed."
    )


# -- the admin and the Overview ----------------------------------------------------------
@pytest.mark.django_db
def test_admin_cancel_selected_asks_first_then_reports_what_changed(
    admin_client: Client, admin_user: User
) -> None:
    waiting, retrying, running = _queued(3)
    Job.objects.filter(task_id=retrying).update(
        state=Job.State.RETRYING, last_failed_at=timezone.now()
    )
    _to_queue(running)
    _claimed(running)
    ids = [_row(t).id for t in (waiting, retrying, running)]
    post = {"action": "cancel_selected", "_selected_action": ids}
    confirm = admin_client.post(url(CHANGELIST), post)
    body = confirm.content.decode()
    assert "Cancel <strong>3</strong> tasks, of which 1 running?" in body
    assert 'name="grace"' in body
    assert {_row(t).state for t in (waiting, running)} == {Job.State.QUEUED, Job.State.RUNNING}
    response = admin_client.post(
        url(CHANGELIST), {**post, "post": "yes", "grace": "5"}, follow=True
    )
    assert messages_of(response) == [
        "Cancelled 2 tasks; asked 1 running task to stop (stopped by force after 5 s)."
    ]
    assert [_row(t).state for t in (waiting, retrying, running)] == [
        Job.State.CANCELLED,
        Job.State.CANCELLED,
        Job.State.RUNNING,
    ]
    assert _row(running).cancelled_by == admin_user.get_username()
    entries = LogEntry.objects.filter(user=admin_user, action_flag=CHANGE)
    assert sorted((e.object_id, e.change_message) for e in entries) == sorted(
        [
            (str(ids[0]), "Cancelled."),
            (str(ids[1]), "Cancelled."),
            (str(ids[2]), "Cancel requested: the running task was asked to stop."),
        ]
    )
    assert {e.content_type.model_class() for e in entries} == {QueuedJob}


@pytest.mark.django_db
def test_admin_bad_grace_changes_nothing(admin_client: Client) -> None:
    [task_id] = _queued(1)
    post = {"action": "cancel_selected", "_selected_action": [_row(task_id).id], "post": "yes"}
    response = admin_client.post(url(CHANGELIST), {**post, "grace": "-3"}, follow=True)
    assert messages_of(response) == [
        "Nothing cancelled: the grace must be whole seconds from 0 to 86400."
    ]
    assert _row(task_id).state == Job.State.QUEUED


@pytest.mark.django_db
def test_admin_cancel_all_matching_counts_then_cancels(admin_client: Client) -> None:
    steady = _queued(2)
    other = registry.enqueue("tests.flow.expiring", "/nonexistent", "k", on_commit=False)
    query = "func=tests.support.flow_jobs.steady"
    page = admin_client.get(url("admin:jobs_queuedjob_cancel_matching", query=query))
    body = page.content.decode()
    assert "Cancel <strong>2</strong> tasks?" in body
    assert "<code>func</code> = tests.support.flow_jobs.steady" in body
    response = admin_client.post(
        url("admin:jobs_queuedjob_cancel_matching", query=query), {"grace": ""}, follow=True
    )
    assert messages_of(response) == ["Cancelled 2 tasks."]
    assert {_row(t).state for t in steady} == {Job.State.CANCELLED}
    assert _row(other).state == Job.State.QUEUED


@pytest.mark.django_db
def test_admin_task_page_cancels_one(admin_client: Client) -> None:
    [task_id] = _queued(1)
    job = _row(task_id)
    detail = admin_client.get(url("admin:jobs_queuedjob_change", job.id)).content.decode()
    assert url("admin:jobs_queuedjob_cancel", job.id) in detail
    confirm = admin_client.get(url("admin:jobs_queuedjob_cancel", job.id))
    assert "Cancel <strong>1</strong> task?" in confirm.content.decode()
    response = admin_client.post(url("admin:jobs_queuedjob_cancel", job.id), follow=True)
    assert messages_of(response) == ["Cancelled 1 task."]
    assert _row(task_id).state == Job.State.CANCELLED
    failed = admin_client.get(url("admin:jobs_failedjob_changelist", query="state=cancelled"))
    assert [j.id for j in failed.context["cl"].result_list] == [job.id]
    shown = admin_client.get(url("admin:jobs_failedjob_change", job.id)).content.decode()
    assert '<td id="task-cancelled">by admin at ' in shown


@pytest.mark.django_db
def test_overview_lists_running_tasks_with_a_cancel_button(admin_client: Client) -> None:
    [task_id] = _queued(1)
    _to_queue(task_id)
    _claimed(task_id)
    job = _row(task_id)
    page = admin_client.get(url("admin:jobs_overview_changelist")).content.decode()
    assert f'<input type="hidden" name="task" value="{job.id}">' in page
    response = admin_client.post(url("admin:jobs_overview_cancel"), {"task": job.id}, follow=True)
    assert messages_of(response) == [
        "Cancelled 0 tasks; asked 1 running task to stop (stopped by force after 30 s)."
    ]
    page = admin_client.get(url("admin:jobs_overview_changelist")).content.decode()
    assert "stop requested by admin" in page
    response = admin_client.post(url("admin:jobs_overview_cancel"), {"task": "x"}, follow=True)
    assert messages_of(response) == ["No such task."]


# -- a real node: cooperative and forced ------------------------------------------------
def _started(worker, directory: Path, *names: str) -> None:
    worker.wait_until(
        lambda: all((directory / f"{name}.started").exists() for name in names),
        timeout=60,
        what=f"{names} to start",
    )


def _marked(worker, task_id: str) -> None:
    worker.wait_until(
        lambda: Job.objects.filter(task_id=task_id, started_at__isnull=False).exists(),
        timeout=30,
        what="the start mark",
    )


def _steady_finishes(worker, directory: Path, task_id: str) -> None:
    worker.wait_until(
        lambda: (
            (directory / "steady.finished").exists()
            and not Job.objects.filter(task_id=task_id).exists()
        ),
        timeout=30,
        what="the neighbour task to finish",
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_running_task_that_checks_stops_at_its_safe_point_within_the_grace(
    worker_factory, tmp_path: Path
) -> None:
    # One task per claim: both must run at once, one on each worker process.
    worker = worker_factory(Q_WORKERS="2", Q_BULK="1")
    coop = registry.enqueue("tests.flow.cooperative", str(tmp_path))
    steady = registry.enqueue("tests.flow.steady", str(tmp_path), 3.0)
    _started(worker, tmp_path, "cooperative", "steady")
    _marked(worker, coop)
    grace = 20
    done = cancel_jobs(queryset=Job.objects.filter(task_id=coop), grace=grace)
    assert done.requested == [_row(coop).id]
    took = wait_until(
        lambda: _row(coop).state == Job.State.CANCELLED,
        timeout=grace,
        what="the cooperative task to end cancelled",
    )
    assert (tmp_path / "cooperative.saw-cancel").exists()  # it stopped itself
    attempt = JobAttempt.objects.get(task_id=coop)
    assert attempt.error_type == "Cancelled"
    assert "jobs.engine.errors.Cancelled" in attempt.error_message
    _steady_finishes(worker, tmp_path, steady)
    assert not log_events(worker.log(), "worker process died")
    assert not log_events(
        worker.log(), "cancelled task stopped by force: its worker process was killed"
    )
    print(f"cooperative cancel: ended {took:.2f} s after the request")
    assert worker.stop() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_running_task_that_never_checks_is_stopped_by_force_after_the_grace(
    worker_factory, tmp_path: Path
) -> None:
    # One task per claim: both must run at once, one on each worker process.
    worker = worker_factory(Q_WORKERS="2", Q_BULK="1")
    busy = registry.enqueue("tests.flow.busy", str(tmp_path))
    steady = registry.enqueue("tests.flow.steady", str(tmp_path), 6.0)
    _started(worker, tmp_path, "busy", "steady")
    _marked(worker, busy)
    grace = 2
    cancel_jobs(queryset=Job.objects.filter(task_id=busy), grace=grace)
    took = wait_until(
        lambda: _row(busy).state == Job.State.CANCELLED,
        timeout=grace + 5,
        what="the busy task to end cancelled",
    )
    assert took >= grace - 0.5  # it was given its grace first
    attempt = JobAttempt.objects.get(task_id=busy)
    assert attempt.error_type == "Cancelled"
    assert "stopped by force after its grace" in attempt.error_message
    assert not (tmp_path / "busy.finished").exists()
    _steady_finishes(worker, tmp_path, steady)
    [killed] = log_events(
        worker.log(), "cancelled task stopped by force: its worker process was killed"
    )
    assert killed["row_id"] == _row(busy).id
    # The killed worker process was replaced: the node runs tasks again.
    again = registry.enqueue("tests.flow.steady", str(tmp_path / "again"), 0)
    (tmp_path / "again").mkdir()
    worker.wait_until(
        lambda: not Job.objects.filter(task_id=again).exists(), timeout=30, what="a task after"
    )
    print(f"forced cancel: ended {took:.2f} s after the request (grace {grace} s)")
    assert worker.stop() == 0
