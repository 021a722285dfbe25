from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.admin_rows import COUNT_CAP, SEARCH_COUNT_CAP, CappedPaginator
from jobs.models import Job
from jobs.taskpage.paging import SearchPaginator, paginator_for, searching
from jobs.taskpage.selectors import TaskFilters, search_tasks
from tests.support.taskpage import task_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def seven() -> list[Job]:
    """Seven tasks of customer 5, newest last, and one of another customer."""
    now = timezone.now()
    task_row(6, "t", created_at=now)
    return [task_row(5, "t", created_at=now - timedelta(minutes=10 - i)) for i in range(7)]


def pages(paginator: CappedPaginator) -> list[list[str]]:
    return [[job.task_id for job in paginator.page(n).object_list] for n in paginator.page_range]


def test_few_matches_are_paged_newest_first_from_their_ids(seven: list[Job]) -> None:
    newest = [job.task_id for job in reversed(seven)]
    paginator = SearchPaginator(search_tasks(filters=TaskFilters(arguments="customer_id=5")), 3)
    assert paginator.count == 7
    assert not paginator.capped
    assert pages(paginator) == [newest[:3], newest[3:6], newest[6:]]


def test_more_matches_than_the_cap_are_paged_by_the_ordered_query(seven: list[Job]) -> None:
    newest = [job.task_id for job in reversed(seven)]
    paginator = SearchPaginator(search_tasks(filters=TaskFilters(arguments="customer_id=5")), 3)
    paginator.cap = 6
    assert paginator.capped
    assert [job.task_id for job in paginator.page(2).object_list] == newest[3:6]


def test_text_and_node_searches_get_the_search_paginator() -> None:
    queryset = search_tasks(filters=TaskFilters())
    for filters in (TaskFilters(text="x"), TaskFilters(error="x"), TaskFilters(node=1)):
        assert searching(filters)
        assert paginator_for(queryset, searching=True, per_page=50).cap == SEARCH_COUNT_CAP
    assert not searching(TaskFilters(state="dead", func="x", queue="y"))
    other = paginator_for(queryset, searching=False, per_page=50)
    assert type(other) is CappedPaginator
    assert other.cap == COUNT_CAP
