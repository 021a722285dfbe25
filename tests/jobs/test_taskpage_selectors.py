from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.taskpage import selectors
from jobs.taskpage.selectors import TaskFilters, search_tasks
from tests.support.taskpage import fail, node, run_on, task_row

pytestmark = pytest.mark.django_db

SUCCEEDS = "tests.support.failures.succeeds"


def found(**filters: object) -> list[str]:
    return [job.task_id for job in search_tasks(filters=TaskFilters(**filters))]  # type: ignore[arg-type]


@pytest.fixture
def tasks() -> dict[str, Job]:
    """Six tasks, one per trait a filter looks for, enqueued a minute apart."""
    now = timezone.now()
    made = {
        "queued": task_row(101, "tok_a", created_at=now - timedelta(minutes=6)),
        "reports": task_row(102, "tok_b", queue="reports", created_at=now - timedelta(minutes=5)),
        "other_job": task_row(func=SUCCEEDS, value=7, created_at=now - timedelta(minutes=4)),
        "dead": task_row(104, "tok_d", state=Job.State.DEAD, created_at=now - timedelta(minutes=3)),
        "retrying": task_row(
            105, "tok_e", state=Job.State.RETRYING, created_at=now - timedelta(minutes=2)
        ),
        "running": task_row(106, "tok_f", created_at=now - timedelta(minutes=1)),
    }
    fail(made["dead"], attempt=4, message="gateway timed out after 30 s", host="w2", pid=22)
    fail(made["retrying"], attempt=1, message="card declined", host="w1", pid=11)
    run_on(made["running"], node(host="w1", pid=11))
    return made


def ids(tasks: dict[str, Job], *names: str) -> list[str]:
    return [tasks[name].task_id for name in names]


def test_no_filter_lists_every_task_newest_first(tasks: dict[str, Job]) -> None:
    assert found() == ids(tasks, "running", "retrying", "dead", "other_job", "reports", "queued")


def test_by_task_id_or_row_number(tasks: dict[str, Job]) -> None:
    assert found(text=tasks["dead"].task_id) == ids(tasks, "dead")
    # A number is also looked for in the argument text (customer_id=102 contains "2").
    assert tasks["reports"].task_id in found(text=str(tasks["reports"].id))
    assert found(text=str(10**15)) == []


def test_by_job_queue_and_state(tasks: dict[str, Job]) -> None:
    assert found(func=SUCCEEDS) == ids(tasks, "other_job")
    assert found(queue="reports") == ids(tasks, "reports")
    assert found(state="dead") == ids(tasks, "dead")
    assert found(state="running") == ids(tasks, "running")
    assert found(state="queued", queue="tablo") == ids(tasks, "other_job", "queued")


def test_by_worker_node_held_now_or_ran_an_attempt(tasks: dict[str, Job]) -> None:
    worker = Job.objects.get(task_id=tasks["running"].task_id).owner
    # w1 pid 11 holds "running" and ran the failed attempt of "retrying"; w2 ran "dead"'s.
    assert found(node=worker) == ids(tasks, "running", "retrying")
    assert found(node=worker + 1000) == []


def test_by_a_busy_worker_node_the_same_rows(
    tasks: dict[str, Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past this many task ids the filter checks each row instead of listing them.
    monkeypatch.setattr(selectors, "NODE_TASKS_LISTED", 0)
    worker = Job.objects.get(task_id=tasks["running"].task_id).owner
    assert found(node=worker) == ids(tasks, "running", "retrying")


def test_by_time_range(tasks: dict[str, Job]) -> None:
    now = timezone.now()
    assert found(
        created_from=now - timedelta(minutes=5, seconds=30),
        created_until=now - timedelta(minutes=2, seconds=30),
    ) == ids(tasks, "dead", "other_job", "reports")


def test_by_argument_values_never_by_a_masked_secret(tasks: dict[str, Job]) -> None:
    assert found(arguments="customer_id=104") == ids(tasks, "dead")
    assert found(arguments="value=7") == ids(tasks, "other_job")
    assert found(arguments="tok_") == []  # tokens are masked: never stored in the text


def test_by_error_text(tasks: dict[str, Job]) -> None:
    assert found(error="TIMED OUT") == ids(tasks, "dead")
    assert found(error="declined") == ids(tasks, "retrying")


def test_free_text_matches_arguments_or_error(tasks: dict[str, Job]) -> None:
    assert found(text="customer_id=102") == ids(tasks, "reports")
    assert found(text="gateway") == ids(tasks, "dead")


def test_filters_combine(tasks: dict[str, Job]) -> None:
    assert found(state="retrying", error="declined", queue="tablo") == ids(tasks, "retrying")
    assert found(state="dead", error="declined") == []


def test_like_wildcards_in_a_term_are_plain_characters(tasks: dict[str, Job]) -> None:
    assert found(arguments="%") == []
    assert found(error="_") == []
