"""The queue behind the broker, as the rest of the project sees it.

The ``jobs.Job`` table is the queue. The operators' services, /healthz, metrics and the
node registry read and change it through ``current()``, a ``DatabaseBackend``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Min

from jobs.engine import handout, rows
from jobs.models import Job

ALL_STATES = tuple(Job.State.values)
RUNNING_FIELDS = (
    "task_id", "job_name", "func", "attempt", "claimed_at", "claimed_by",
    "progress_done", "progress_total", "progress_message", "progress_updated_at",
)  # fmt: skip


class DatabaseBackend:
    """The ``jobs.Job`` table is the queue: the row is the task.

    What the node registry, the services and the reports need.
    """

    alias = DEFAULT_DB_ALIAS

    def take_node(self, node_id: int, *, reason: str) -> int:
        """The node is dead or stopped: hand out again every task it holds (a lost
        attempt each), and let it claim nothing more. Returns how many."""
        held = handout.take_running(node_id, alias=self.alias)
        handout.hand_out_again(held, reason=reason, alias=self.alias)
        return len(held)

    def running_counts(self, node_ids: Sequence[int]) -> dict[int, int]:
        """node id -> tasks it holds now."""
        counts = (
            Job.objects.filter(owner__in=node_ids, state=Job.State.RUNNING)
            .values("owner")
            .annotate(n=Count("id"))
            .values_list("owner", "n")
            .order_by()
        )
        # The owner column is nullable; the filter on it leaves no NULL.
        return {owner: n for owner, n in counts if owner is not None}

    def enqueue(self, tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
        """Store task packages; for a unique job already active, its task id."""
        return rows.insert_rows(tasks, queue=queue)

    def requeue(self, budgets: dict[int, int]) -> set[int]:
        """Operators retry failed tasks: ids of the rows the queue takes back.

        ``budgets``: ``Job`` row id (locked by the caller) -> its new ``max_attempts``.
        """
        return set(budgets)  # the row's own update is the retry

    def remove_waiting(self, row_ids: Sequence[int]) -> set[int]:
        """Operators delete tasks (rows locked by the caller): ids of those not running."""
        return set(row_ids)  # locked rows in a waiting state: deleting them is the removal

    def running(self, *, limit: int) -> list[dict[str, Any]]:
        """Running tasks, longest first: ``RUNNING_FIELDS`` each (progress may be None)."""
        # Ordered by the index (state, created_at): the longest-running rows are
        # rarely the newest, and sorting every running row would defeat the LIMIT.
        rows = Job.objects.filter(state=Job.State.RUNNING).order_by("created_at", "id")
        return list(rows.values(*RUNNING_FIELDS)[:limit])

    def depth(
        self, queue: str | None = None, *, states: Sequence[str] = ALL_STATES
    ) -> dict[str, dict[str, Any]]:
        """queue -> {state: count, "oldest_queued": datetime | None}, counting ``states``."""
        qs = Job.objects.all()
        if tuple(states) != ALL_STATES:
            qs = qs.filter(state__in=states)  # jobs_job_state_created_idx
        if queue is not None:
            qs = qs.filter(queue=queue)
        figures: dict[str, dict[str, Any]] = {}
        rows = qs.values("queue", "state").annotate(count=Count("id"), oldest=Min("created_at"))
        for row in rows.order_by():
            entry = figures.setdefault(row["queue"], empty_depth())
            entry[row["state"]] = row["count"]
            if row["state"] == Job.State.QUEUED:
                entry["oldest_queued"] = row["oldest"]
        return figures


def empty_depth() -> dict[str, Any]:
    return {state: 0 for state in Job.State.values} | {"oldest_queued": None}


_backend = DatabaseBackend()


def current() -> DatabaseBackend:
    """The queue, as the node registry, the failure hook, the services and the reports use it."""
    return _backend
