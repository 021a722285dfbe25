from __future__ import annotations

import logging
import math

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from jobs.engine import registry
from jobs.engine.registry import UnknownJob
from jobs.models import Job
from tests.support import delivery as declared  # registers the jobs used below
from tests.support import jobtable
from tests.support import runtime as support

pytestmark = pytest.mark.django_db


def test_unknown_job_name_fails_loudly() -> None:
    with pytest.raises(UnknownJob, match=r"unknown job 'nope'.*tests\.echo"):
        registry.enqueue("nope", "x")
    with pytest.raises(UnknownJob):
        registry.enqueue_many("nope", [("x",)])


def test_declaring_one_name_for_two_functions_is_refused() -> None:
    def other() -> None:
        pass

    with pytest.raises(ValueError, match="declared twice"):
        registry.job("tests.echo")(other)
    assert registry.get("tests.echo").func is support.echo


def test_spec_is_found_by_name_and_by_function_path() -> None:
    spec = registry.get("tests.unique")
    assert spec.path == "tests.support.runtime.unique_job"
    assert registry.for_func(spec.path) is spec
    assert spec in registry.all_jobs()


def test_enqueue_writes_a_signed_package_of_the_job() -> None:
    task_id = registry.enqueue("tests.unique", "k1", on_commit=False)
    row = Job.objects.get(task_id=task_id)
    package = SignedPackage.loads(row.payload)
    assert package["func"] == "tests.support.runtime.unique_job"
    assert package["args"] == ("k1",)
    assert package["kwargs"] == {}
    assert package["timeout"] == 30
    assert (row.job_name, row.priority, row.unique_key, row.state) == (
        "tests.unique",
        5,
        "tests.unique:k1",
        Job.State.QUEUED,
    )


def test_second_enqueue_of_an_active_unique_job_returns_the_existing_task() -> None:
    first = registry.enqueue("tests.unique", "tablo-1", on_commit=False)
    second = registry.enqueue("tests.unique", "tablo-1", "other arg", on_commit=False)
    other = registry.enqueue("tests.unique", "tablo-2", on_commit=False)
    assert second == first
    assert other != first
    assert Job.objects.filter(unique_key="tests.unique:tablo-1").count() == 1


@pytest.mark.parametrize("state", [Job.State.RUNNING, Job.State.RETRYING])
def test_unique_key_holds_while_running_or_retrying(state: str) -> None:
    first = registry.enqueue("tests.unique", "t", on_commit=False)
    Job.objects.filter(task_id=first).update(state=state)
    assert registry.enqueue("tests.unique", "t", on_commit=False) == first


def test_unique_key_is_free_again_once_the_task_is_dead() -> None:
    first = registry.enqueue("tests.unique", "t", on_commit=False)
    Job.objects.filter(task_id=first).update(state=Job.State.DEAD)
    second = registry.enqueue("tests.unique", "t", on_commit=False)
    assert second != first
    assert Job.objects.filter(unique_key="tests.unique:t").count() == 2


def test_duplicate_inside_a_transaction_does_not_break_it() -> None:
    with transaction.atomic():
        first = registry.enqueue("tests.unique", "t", on_commit=False)
        assert registry.enqueue("tests.unique", "t", on_commit=False) == first
        # The transaction is still usable after the skipped insert.
        assert Job.objects.filter(task_id=first).exists()


def test_enqueue_many_is_one_insert() -> None:
    with CaptureQueriesContext(connection) as queries:
        ids = registry.enqueue_many("tests.echo", [(str(i),) for i in range(50)], on_commit=False)
    inserts = [
        q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("INSERT")
    ]
    # PostgreSQL takes the batch in one statement; SQLite caps the parameters of
    # one statement (999 on older builds), and Django splits below that cap.
    fields = [f for f in Job._meta.concrete_fields if not f.primary_key]
    per_statement = connection.ops.bulk_batch_size(fields, [Job()] * 50) or 50
    assert len(inserts) == math.ceil(50 / min(per_statement, 50))
    if connection.vendor == "postgresql":
        assert len(inserts) == 1
    assert len(set(ids)) == 50
    rows = {row.task_id: row for row in Job.objects.filter(task_id__in=ids)}
    assert [SignedPackage.loads(rows[i].payload)["args"] for i in ids] == [
        (str(i),) for i in range(50)
    ]


def test_enqueue_many_skips_active_unique_keys_and_returns_their_ids() -> None:
    existing = registry.enqueue("tests.unique", "a", on_commit=False)
    ids = registry.enqueue_many(
        "tests.unique",
        [("a",), ("b",), {"args": ["b"], "kwargs": {}}, ("c",)],
        on_commit=False,
    )
    assert ids[0] == existing
    assert ids[1] == ids[2]
    assert len(set(ids)) == 3
    assert Job.objects.count() == 3


def test_enqueue_many_of_nothing_enqueues_nothing() -> None:
    assert registry.enqueue_many("tests.echo", [], on_commit=False) == []
    assert Job.objects.count() == 0


def test_enqueue_waits_for_commit_by_default(django_capture_on_commit_callbacks) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        transaction.atomic(),
    ):
        task_id = registry.enqueue("tests.echo", "x")
        assert not Job.objects.filter(task_id=task_id).exists()
    assert len(callbacks) == 1
    assert Job.objects.filter(task_id=task_id).exists()


def test_enqueue_after_commit_is_dropped_on_rollback(django_capture_on_commit_callbacks) -> None:
    def enqueue_then_fail() -> None:
        with transaction.atomic():
            registry.enqueue("tests.echo", "x")
            raise RuntimeError("rollback")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        enqueue_then_fail()
    assert callbacks == []
    assert Job.objects.count() == 0


def test_enqueue_in_transaction_rolls_back_with_the_caller() -> None:
    seen: list[str] = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            seen.append(registry.enqueue("tests.echo", "x", on_commit=False))
            assert Job.objects.filter(task_id=seen[0]).exists()
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert not Job.objects.filter(task_id=seen[0]).exists()
    with transaction.atomic():
        kept = registry.enqueue("tests.echo", "y", on_commit=False)
    assert Job.objects.filter(task_id=kept).exists()


def test_sync_mode_runs_the_job_inline(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with support.conf(SYNC=True):
        task_id = registry.enqueue("tests.echo", "inline", on_commit=False)
    [inside] = support.events(caplog, "inside job")
    assert (inside["task_id"], inside["value"]) == (task_id, "inline")
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_registry_inserts_wake_a_listening_worker_and_are_claimable() -> None:
    from django_q.conf import Conf

    from jobs.engine.listener import Listener

    listener = Listener("default", Conf.CLUSTER_NAME)
    try:
        if connection.vendor == "postgresql":
            assert listener.wait(0) is None  # LISTENs from now on
        task_id = registry.enqueue("tests.echo", "wake")
        if connection.vendor == "postgresql":
            # The NOTIFY of the registry's own INSERT (sent at commit), not a poll.
            assert listener.wait(5.0) == {""}
        [(ack_id, payload)] = jobtable.claim()
        assert SignedPackage.loads(payload)["id"] == task_id
        assert ack_id[1] == 1
    finally:
        listener.close()


@pytest.mark.parametrize(
    "func", ["tests.support.delivery.longer_than_q_timeout", "tests.longer_than_q_timeout"]
)
def test_async_task_by_path_or_name_gets_the_declared_timeout(func: str) -> None:
    task_id = async_task(func, 1, "marker")

    job = Job.objects.get(task_id=task_id)
    package = SignedPackage.loads(job.payload)
    assert package["func"] == f"{declared.__name__}.longer_than_q_timeout"
    assert package["timeout"] == job.timeout == 20
    assert job.job_name == "tests.longer_than_q_timeout"


def test_an_explicit_timeout_wins_over_the_declared_one() -> None:
    task_id = async_task("tests.support.delivery.longer_than_q_timeout", 1, "m", timeout=7)

    assert SignedPackage.loads(Job.objects.get(task_id=task_id).payload)["timeout"] == 7


def test_a_deferred_unique_enqueue_returns_the_task_that_holds_the_key() -> None:
    first = registry.enqueue("tests.unique", "k", on_commit=False)
    with transaction.atomic():
        again = registry.enqueue("tests.unique", "k", "more")
        fresh = registry.enqueue("tests.unique", "other")
    assert again == first
    assert Job.objects.filter(task_id=fresh).exists()
    assert Job.objects.count() == 2


def test_a_unique_enqueue_rolls_back_with_the_caller() -> None:
    def enqueue_then_fail() -> None:
        with transaction.atomic():
            registry.enqueue("tests.unique", "k")
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_failing_enqueue_after_commit_is_logged_and_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(tasks, *, spec):
        raise RuntimeError("queue table unavailable")

    monkeypatch.setattr(registry, "_push", refuse)
    with transaction.atomic():
        task_id = registry.enqueue("tests.echo", "x")
        Job.objects.create(task_id="c" * 32, queue="q", name="n", func="f", payload="")
    # The caller's own write committed; the failure is on record with the task id.
    assert Job.objects.filter(task_id="c" * 32).exists()
    [event] = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "enqueue after commit failed"
    ]
    assert (event["job"], event["task_ids"]) == ("tests.echo", [task_id])


def _policy(task_id: str) -> tuple:
    job = Job.objects.get(task_id=task_id)
    package = SignedPackage.loads(job.payload)
    return (
        job.func,
        job.job_name,
        job.queue,
        job.priority,
        job.timeout,
        package.get("timeout"),
        job.max_attempts,
        job.unique_key,
    )


def test_async_task_by_path_gets_exactly_the_policy_registry_enqueue_gives() -> None:
    by_registry = registry.enqueue("files.purge_tablo", "t-1", on_commit=False)
    declared_policy = _policy(by_registry)
    Job.objects.filter(task_id=by_registry).delete()  # frees the unique key
    by_path = async_task("files.tasks.purge_tablo", "t-1")
    again = async_task("files.tasks.purge_tablo", "t-1")  # the key is held: no second row

    assert _policy(by_path) == declared_policy
    assert declared_policy == (
        "files.tasks.purge_tablo", "files.purge_tablo", "tablo", 0, 1800, 1800, 10,
        "purge_tablo:t-1",
    )  # fmt: skip
    assert Job.objects.filter(unique_key="purge_tablo:t-1").count() == 1
    assert not Job.objects.filter(task_id=again).exists()
