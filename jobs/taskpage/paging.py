"""Pages of a task search that stay fast whatever the planner guesses.

A text or node search is counted by reading at most ``SEARCH_COUNT_CAP + 1`` matching
(id, created_at) pairs in no order, the plan the trigram indexes serve. When that is all
of them, the page is cut from those pairs, sorted here, and its rows read by id: a page
query with ``ORDER BY created_at LIMIT n`` would let PostgreSQL walk the ``created_at``
index, filtering row by row, on the guess that a few matches come early (a one-match
search took seconds at a million tasks). With more matches than that, the ordered
query finds a page near the start of the index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.paginator import Page
from django.utils.functional import cached_property

from jobs.admin_rows import COUNT_CAP, SEARCH_COUNT_CAP, CappedPaginator
from jobs.models import Job
from jobs.taskpage.selectors import TaskFilters


class SearchPaginator(CappedPaginator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, cap=SEARCH_COUNT_CAP, **kwargs)

    @cached_property
    def _matches(self) -> list[tuple[int, datetime]]:
        pairs = self.object_list.order_by().values_list("id", "created_at")[: self.cap + 1]
        return list(pairs)

    @cached_property
    def count(self) -> int:
        return len(self._matches)

    def page(self, number: Any) -> Page[Job]:
        number = self.validate_number(number)
        if self.capped:
            return super().page(number)
        newest = sorted(self._matches, key=lambda pair: (pair[1], pair[0]), reverse=True)
        bottom = (number - 1) * self.per_page
        ids = [pair[0] for pair in newest[bottom : bottom + self.per_page]]
        rows = {job.id: job for job in self.object_list.order_by().filter(id__in=ids)}
        return Page([rows[i] for i in ids if i in rows], number, self)


def searching(filters: TaskFilters) -> bool:
    """Whether the filters include a text or node search (counted up to the lower cap)."""
    return bool(
        filters.text.strip()
        or filters.arguments.strip()
        or filters.error.strip()
        or filters.node is not None
    )


def paginator_for(
    queryset: Any, *, searching: bool, per_page: int, **options: Any
) -> CappedPaginator:
    """The paginator of a task search page (the admin and the benchmark share it)."""
    if searching:
        return SearchPaginator(queryset, per_page, **options)
    return CappedPaginator(queryset, per_page, cap=COUNT_CAP, **options)
