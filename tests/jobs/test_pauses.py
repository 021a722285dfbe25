"""Pausing a queue: the commands, the service's records, and a real cluster holding off."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django_q.conf import Conf
from django_q.tasks import async_task

from jobs import pauses
from jobs.engine import paused
from jobs.engine.worker import Worker
from jobs.models import Job, QueuePause
from tests.support import jobtable
from tests.support.runtime import log_events
from tests.support.waiting import wait_until

ECHO = "tests.support.runtime.echo"


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_pause_and_resume_commands_report_status_as_json() -> None:
    queue = Conf.CLUSTER_NAME
    status = json.loads(run("pause_queue", queue, "--json"))
    assert status["queue"] == queue
    assert status["paused"] is True
    assert status["changed"] is True
    assert status["paused_by"].endswith("(command line)")
    assert QueuePause.objects.get().queue == queue

    again = json.loads(run("pause_queue", queue, "--json"))
    assert (again["paused"], again["changed"]) == (True, False)
    assert again["paused_at"] == status["paused_at"]

    resumed = json.loads(run("resume_queue", queue, "--json"))
    assert resumed == {
        "queue": queue,
        "paused": False,
        "changed": True,
        "paused_at": None,
        "paused_by": None,
    }
    assert not QueuePause.objects.exists()
    assert run("resume_queue", queue) == f"Not paused: queue {queue!r}.\n"


@pytest.mark.django_db
def test_text_output_says_who_and_when() -> None:
    out = run("pause_queue", Conf.CLUSTER_NAME)
    assert out.startswith(f"Paused: queue {Conf.CLUSTER_NAME!r} since ")
    assert "(command line)" in out
    assert run("resume_queue", Conf.CLUSTER_NAME) == f"Resumed: queue {Conf.CLUSTER_NAME!r}.\n"


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["pause_queue", "resume_queue"])
@pytest.mark.parametrize("name", ["", "bad name", "semi;colon", "x" * 101])
def test_bad_names_are_refused_with_a_clear_message(command: str, name: str) -> None:
    with pytest.raises(CommandError) as exc:
        call_command(command, name)
    assert str(exc.value) == (
        f"{name.strip()!r} is not a queue name: use 1 to 100 letters, digits, '_', '.', ':' or '-'."
    )
    assert not QueuePause.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["pause_queue", "resume_queue"])
def test_unknown_queues_are_refused_and_the_known_ones_listed(command: str) -> None:
    Job.objects.create(task_id="t1", queue="reports", name="n", func="f", payload="p")
    with pytest.raises(CommandError) as exc:
        call_command(command, "nosuchqueue")
    known = ", ".join(sorted(["reports", Conf.CLUSTER_NAME]))
    assert str(exc.value) == f"unknown queue 'nosuchqueue'; known queues: {known}."
    assert not QueuePause.objects.exists()


@pytest.mark.django_db
def test_a_queue_with_waiting_tasks_can_be_paused() -> None:
    Job.objects.create(task_id="t1", queue="reports", name="n", func="f", payload="p")
    assert pauses.pause_queue(queue="reports").paused
    assert paused.is_paused("reports")
    assert not paused.is_paused(Conf.CLUSTER_NAME)


@pytest.mark.django_db
def test_an_operator_pause_and_resume_are_in_the_admin_log() -> None:
    user = User.objects.create_user("ops", is_staff=True)
    pauses.pause_queue(queue=Conf.CLUSTER_NAME, user=user)
    assert QueuePause.objects.get().paused_by == "ops"
    pauses.resume_queue(queue=Conf.CLUSTER_NAME, user=user)
    entries = LogEntry.objects.order_by("id")
    assert [(e.user_id, e.object_id, e.change_message) for e in entries] == [
        (user.pk, Conf.CLUSTER_NAME, "Paused the queue."),
        (user.pk, Conf.CLUSTER_NAME, "Resumed the queue."),
    ]
    assert entries[0].content_type.model == "overview"


@pytest.mark.django_db
def test_healthz_lists_paused_queues(client) -> None:
    assert client.get("/healthz").json()["paused_queues"] == []
    pauses.pause_queue(queue=Conf.CLUSTER_NAME)
    [paused] = client.get("/healthz").json()["paused_queues"]
    assert paused["queue"] == Conf.CLUSTER_NAME
    assert paused["paused_by"].endswith("(command line)")
    assert 0 <= paused["paused_seconds"] < 60


def queue_rows(queue: str) -> list[tuple[str, int]]:
    return list(Job.objects.filter(queue=queue).values_list("state", "attempt").order_by("id"))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_running_cluster_holds_a_paused_queue_and_resume_releases_it(worker_factory) -> None:
    main = Conf.CLUSTER_NAME
    worker = worker_factory(Q_WORKERS="2")
    control = worker_factory(Q_CLUSTER_NAME="control")
    wait_until(lambda: not Job.objects.exists(), timeout=30, what="start-up heartbeats done")

    pauses.pause_queue(queue=main)
    # Each worker process reads the pause itself (within paused.CHECK_SECONDS).
    worker.wait_until(
        lambda: len(log_events(worker.log(), "queue paused: claiming nothing")) >= 2,
        timeout=10,
        what="both worker processes to see the pause",
    )
    for i in range(3):
        async_task(ECHO, f"held-{i}")
    # The control cluster takes a task enqueued after the held ones: by the time it is
    # done the paused cluster had the same chance, and took none.
    async_task(ECHO, "control", cluster="control")
    wait_until(lambda: not queue_rows("control"), timeout=30, what="the control task done")
    assert queue_rows(main) == [("queued", 0)] * 3

    resumed_at = time.monotonic()
    pauses.resume_queue(queue=main)
    wait_until(lambda: not queue_rows(main), timeout=30, what="the held tasks done")
    worker.wait_for_log("queue resumed: claiming", timeout=5)
    # PostgreSQL wakes the workers with NOTIFY, SQLite's poll every 50 ms: well under
    # the pause check of a busy loop either way.
    print(f"held tasks done {time.monotonic() - resumed_at:.2f}s after resume")
    control.stop()
    worker.stop()


@pytest.mark.django_db(transaction=True)  # a worker's connection is in autocommit
def test_a_worker_claims_nothing_while_its_queue_is_paused() -> None:
    from jobs.engine import nodes
    from jobs.engine.broker import DatabaseBroker
    from jobs.engine.worker import Worker
    from tests.support import broker as tasks

    broker = DatabaseBroker(list_key="pause-test")
    worker = Worker(queue="pause-test", node=nodes.register(cluster="pause-test"))
    ids = [async_task(tasks.noop, i, broker=broker) for i in range(3)]
    pauses.pause_queue(queue="pause-test")
    assert worker.claim() == 0
    assert worker.claim() == 0  # the cached answer, or a fresh read: still paused
    rows = Job.objects.filter(queue="pause-test").order_by("id")
    assert [(r.task_id, r.state, r.attempt) for r in rows] == [
        (task_id, "queued", 0) for task_id in ids
    ]
    pauses.resume_queue(queue="pause-test")
    # A worker's pause check is at most CHECK_SECONDS old (PostgreSQL's workers are
    # also woken by the resume's NOTIFY): it claims again within a second.
    deadline = time.monotonic() + 1.5
    while not worker.claim() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [c.row_id for c in worker.claimed] == [rows[0].id], "nothing claimed 1.5 s after resume"


@pytest.mark.django_db(transaction=True)
def test_a_resume_wakes_an_idle_worker_that_then_claims_at_once() -> None:
    queue = Conf.CLUSTER_NAME
    worker = Worker(queue=queue, node=jobtable.node(queue), poll=0.05)
    try:
        pauses.pause_queue(queue=queue)
        async_task(ECHO, "held")
        assert worker.claim() == 0  # paused, and the answer is kept a while
        worker.wait()  # idle: on PostgreSQL it LISTENs from now on
        pauses.resume_queue(queue=queue)
        if connection.vendor == "postgresql":
            # The resume's NOTIFY wakes it, and it reads the pause again at once.
            assert worker.wait() is True
            assert worker.claim() == 1
        else:  # no NOTIFY: the pause is read again within paused.CHECK_SECONDS
            wait_until(worker.claim, timeout=5, what="the claim after the resume")
    finally:
        worker.close()
