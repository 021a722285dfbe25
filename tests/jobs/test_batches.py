"""Batches: tasks enqueued together whose callbacks run once, when every member has
ended (succeeded, dead, cancelled or expired), also across nodes and a kill -9."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django_q.signing import SignedPackage

from jobs.engine import registry, transitions
from jobs.engine.registry import UnknownJob
from jobs.engine.worker import Worker
from jobs.models import Job, JobBatch
from jobs.queued.services import cancel_jobs
from tests.support import flow_jobs, jobtable  # noqa: F401 (flow_jobs registers the jobs)
from tests.support.admin import url
from tests.support.waiting import wait_until

DONE = "tests.support.flow_jobs.batch_done"
FAILED = "tests.flow.batch_failed"  # a registered job, by name


@pytest.fixture
def drain(settings) -> Iterator[Callable[[], int]]:
    """Run every ready task of the default queue in this process; how many ran."""
    made: list[Worker] = []

    def run() -> int:
        if not made:
            made.append(Worker(queue=Job.objects.order_by("id").values_list("queue", flat=True)[0],
                               node=jobtable.node()))  # fmt: skip
        worker, ran = made[0], 0
        while worker.claim():
            while worker.claimed:
                worker.run_next()
                ran += 1
            worker.finish()
        return ran

    yield run
    for worker in made:
        worker.close()


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], list[tuple[str, Any]]]:
    """What the callbacks run in this process recorded: (kind, summary), in order."""
    log = tmp_path / "flow.jsonl"
    monkeypatch.setenv("FLOW_TEST_LOG", str(log))

    def read() -> list[tuple[str, Any]]:
        return [(r["kind"], r["summary"]) for r in _records(log) if r["kind"] != "member"]

    return read


def _members(n: int, *, fail: tuple[int, ...] = (), directory: Path = Path("/")) -> list[Any]:
    return [
        ("tests.flow.snoozer", (str(directory), 0))
        if i in fail
        else ("tests.flow.member", (f"k{i}", 0))
        for i in range(n)
    ]


@pytest.mark.django_db(transaction=True)
def test_callbacks_run_once_after_the_last_member_succeeds(drain, ran) -> None:
    batch = registry.enqueue_batch(
        _members(3), on_success=DONE, on_failure=FAILED, on_finish=DONE, name="three"
    )
    assert len(batch.task_ids) == 3
    assert JobBatch.objects.get(id=batch.id).total == 3
    first = Job.objects.get(task_id=batch.task_ids[0])
    Job.objects.filter(task_id__in=batch.task_ids[1:]).update(queue="elsewhere")
    drain()
    assert JobBatch.objects.get(id=batch.id).succeeded == 1
    assert ran() == []  # two members have not ended
    assert not Job.objects.filter(id=first.id).exists()
    Job.objects.filter(task_id__in=batch.task_ids[1:]).update(queue=first.queue)
    drain()
    done = JobBatch.objects.get(id=batch.id)
    assert (done.succeeded, done.state) == (3, "succeeded")
    summary = {
        "batch": batch.id, "name": "three", "total": 3, "succeeded": 3, "dead": 0,
        "cancelled": 0, "expired": 0, "state": "succeeded",
    }  # fmt: skip
    assert ran() == [("callback", summary), ("callback", summary)]  # on_success, on_finish
    assert len(done.callbacks.split(",")) == 2
    assert drain() == 0
    assert len(ran()) == 2


@pytest.mark.django_db(transaction=True)
def test_a_member_that_did_not_succeed_runs_on_failure_and_a_later_retry_runs_nothing_again(
    drain, ran, tmp_path: Path
) -> None:
    batch = registry.enqueue_batch(
        _members(2, fail=(1,), directory=tmp_path), on_success=DONE, on_failure=FAILED,
        on_finish=DONE,
    )  # fmt: skip
    drain()
    done = JobBatch.objects.get(id=batch.id)
    assert (done.succeeded, done.dead, done.state) == (1, 1, "failed")
    assert [kind for kind, _ in ran()] == ["on_failure", "callback"]
    assert ran()[0][1]["dead"] == 1
    # The dead member retried: counted again when it ends, no callback enqueued twice.
    dead = Job.objects.get(task_id=batch.task_ids[1])
    call_command("retry_failed_jobs", str(dead.id), stdout=StringIO())
    assert JobBatch.objects.get(id=batch.id).dead == 0
    drain()
    again = JobBatch.objects.get(id=batch.id)
    assert (again.succeeded, again.dead, again.finished_at) == (1, 1, done.finished_at)
    assert len(ran()) == 2


@pytest.mark.django_db
def test_cancelled_expired_and_discarded_members_end_the_batch() -> None:
    batch = registry.enqueue_batch(_members(3), on_finish=DONE)
    first, second, third = (Job.objects.get(task_id=t) for t in batch.task_ids)
    cancel_jobs(queryset=Job.objects.filter(id=first.id))
    Job.objects.filter(id=second.id).update(expires_at=first.created_at)
    assert transitions.expire_due() == 1
    Job.objects.filter(id=third.id).update(
        state=Job.State.RETRYING, last_failed_at=first.created_at
    )
    call_command("discard_failed_jobs", str(third.id), stdout=StringIO())
    done = JobBatch.objects.get(id=batch.id)
    assert (done.cancelled, done.expired, done.total, done.state) == (2, 1, 3, "failed")
    [callback] = Job.objects.filter(func=DONE)
    summary = SignedPackage.loads(callback.payload)["args"][0]
    assert (summary["cancelled"], summary["expired"], summary["state"]) == (2, 1, "failed")


@pytest.mark.django_db
def test_bad_batches_are_refused_and_write_nothing() -> None:
    with pytest.raises(UnknownJob, match="on_finish='nope' is neither a registered job"):
        registry.enqueue_batch(_members(1), on_finish="nope")
    with pytest.raises(UnknownJob, match=r"unknown job 'tests\.flow\.missing'"):
        registry.enqueue_batch([("tests.flow.missing", ())], on_finish=DONE)
    with pytest.raises(TypeError, match="a batch call is"):
        registry.enqueue_batch(["tests.flow.member"], on_finish=DONE)  # type: ignore[list-item]
    assert not JobBatch.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_progress_shows_in_the_admin_and_on_the_overview(admin_client: Client) -> None:
    batch = registry.enqueue_batch(_members(3), on_finish=DONE, name="nightly export")
    cancel_jobs(queryset=Job.objects.filter(task_id=batch.task_ids[0]))
    page = admin_client.get(url("admin:jobs_jobbatch_changelist")).content.decode()
    assert "nightly export" in page
    assert "1/3 ended (33%)" in page
    detail = admin_client.get(url("admin:jobs_jobbatch_change", batch.id)).content.decode()
    assert f"?batch={batch.id}" in detail
    members = admin_client.get(url("admin:jobs_queuedjob_changelist", query=f"batch={batch.id}"))
    assert len(members.context["cl"].result_list) == 2
    overview = admin_client.get(url("admin:jobs_overview_changelist")).content.decode()
    assert f'<tr data-batch="{batch.id}">' in overview
    assert '<progress max="3" value="1"></progress> 1/3 (33%)' in overview


# -- a real cluster: two nodes, one killed ---------------------------------------------
def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_batch_of_1000_with_a_node_killed_runs_its_callback_once_after_the_last_member(
    worker_factory, tmp_path: Path
) -> None:
    log = tmp_path / "flow.jsonl"
    env = {"Q_WORKERS": "2", "FLOW_TEST_LOG": str(log)}
    batch = registry.enqueue_batch(
        [("tests.flow.member", (f"k{i:04d}", 0.01)) for i in range(1000)],
        on_finish=DONE,
        name="kill -9",
    )
    victim = worker_factory(**env)
    peer = worker_factory(**env)
    wait_until(
        lambda: JobBatch.objects.get(id=batch.id).succeeded >= 300,
        timeout=120,
        what="a third of the batch",
    )
    victim.kill()
    killed_at = JobBatch.objects.get(id=batch.id).succeeded
    peer.wait_until(
        lambda: any(r["kind"] == "callback" for r in _records(log)),
        timeout=180,
        what="the callback",
    )
    # Drained: nothing of the batch is left, and the callback's own row is gone.
    peer.wait_until(
        lambda: (
            not Job.objects.filter(batch=batch.id).exists()
            and not Job.objects.filter(func=DONE).exists()
        ),
        timeout=60,
        what="the queue to drain",
    )
    records = _records(log)
    callbacks = [r for r in records if r["kind"] == "callback"]
    ends = [r for r in records if r["kind"] == "member" and r["phase"] == "end"]
    done = JobBatch.objects.get(id=batch.id)
    print(
        f"batch of 1000, kill -9 at {killed_at} succeeded: member runs {len(ends)}, "
        f"callbacks {len(callbacks)}"
    )
    assert len(callbacks) == 1
    assert {r["key"] for r in ends} == {f"k{i:04d}" for i in range(1000)}
    assert callbacks[0]["t"] >= max(r["t"] for r in ends)  # after the last member
    assert callbacks[0]["summary"] == {
        "batch": batch.id, "name": "kill -9", "total": 1000, "succeeded": 1000, "dead": 0,
        "cancelled": 0, "expired": 0, "state": "succeeded",
    }  # fmt: skip
    assert (done.succeeded, done.state, len(done.callbacks.split(","))) == (1000, "succeeded", 1)
    assert peer.stop() == 0
