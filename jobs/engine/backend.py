"""The queue behind the broker, as the rest of the project sees it.

Two brokers keep tasks: ``jobs.engine.broker.DatabaseBroker`` (the ``jobs.Job`` table)
and ``jobs.engine.redis_broker.RedisBroker`` (Redis, with ``jobs.Job`` rows only as the
records of failed tasks). Everything above the broker (worker nodes, the failure
hook, the operators' services, /healthz, metrics) goes through ``current()``,
an object with the methods of ``QueueBackend``; no caller asks which broker it is.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Min
from django.utils.module_loading import import_string
from django_q.conf import Conf

from jobs.engine import handout, rows
from jobs.engine.attempts import record_failure
from jobs.engine.context import AckId, current_node_id
from jobs.models import Job

ALL_STATES = tuple(Job.State.values)
RUNNING_FIELDS = (
    "task_id", "job_name", "func", "attempt", "claimed_at", "claimed_by",
    "progress_done", "progress_total", "progress_message", "progress_updated_at",
)  # fmt: skip


def claim_of(task: dict[str, Any]) -> AckId | None:
    """The broker's (task key, attempt) of a finished run (``jobs.engine.runtime`` stamps it)."""
    claim = task.get("claim") or task.get("ack_id")
    if isinstance(claim, (tuple, list)) and len(claim) == 2:
        return int(claim[0]), int(claim[1])
    return None


@dataclass(frozen=True)
class FailureTarget:
    """What the failure hook needs to know about the task it decides for."""

    attempt: int
    max_attempts: int
    job_name: str


class QueueBackend(ABC):
    """What the node registry, the failure hook, the services and the reports need."""

    # -- worker nodes (jobs.engine.nodes) ------------------------------------------------
    @abstractmethod
    def take_node(self, node_id: int, *, reason: str) -> int:
        """The node is dead or stopped: hand out again every task it holds (a lost
        attempt each), and let it claim nothing more. Returns how many."""

    @abstractmethod
    def hand_out_lost(self, node_id: int, acks: Sequence[AckId]) -> int:
        """Tasks whose worker process died inside a live node: a lost attempt each."""

    @abstractmethod
    def hand_back(self, node_id: int, acks: Sequence[AckId]) -> int:
        """Claimed tasks that never started: ready again, no attempt used."""

    @abstractmethod
    def rejoin(self, node_id: int) -> None:
        """A node declared dead came back (it may claim again)."""

    @abstractmethod
    def running_counts(self, node_ids: Sequence[int]) -> dict[int, int]:
        """node id -> tasks it holds now."""

    # -- enqueue (jobs.engine.registry) --------------------------------------------------
    @abstractmethod
    def enqueue(self, tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
        """Store task packages; for a unique job already active, its task id."""

    # -- failures (jobs.failures) -------------------------------------------------
    @abstractmethod
    def failure_target(self, task: dict[str, Any]) -> FailureTarget | None:
        """The queued task a finished run belongs to (None: nothing of ours to retry)."""

    @abstractmethod
    def record_failure(self, *, claim: AckId | None, **fields: Any) -> bool:
        """``jobs.engine.attempts.record_failure`` for this node's run of ``claim``."""

    @abstractmethod
    def succeeded_after_failure(self, task: dict[str, Any]) -> bool:
        """A task that had failed succeeded: False when this node had lost it."""

    @abstractmethod
    def requeue(self, budgets: dict[int, int]) -> set[int]:
        """Operators retry failed tasks: ids of the rows the queue takes back.

        ``budgets``: ``Job`` row id (locked by the caller) -> its new ``max_attempts``.
        """

    @abstractmethod
    def remove_waiting(self, row_ids: Sequence[int]) -> set[int]:
        """Operators delete tasks (rows locked by the caller): ids of those not running."""

    # -- reports --------------------------------------------------------------------
    @abstractmethod
    def running(self, *, limit: int) -> list[dict[str, Any]]:
        """Running tasks, longest first: ``RUNNING_FIELDS`` each (progress may be None)."""

    @abstractmethod
    def depth(
        self, queue: str | None = None, *, states: Sequence[str] = ALL_STATES
    ) -> dict[str, dict[str, Any]]:
        """queue -> {state: count, "oldest_queued": datetime | None}, counting ``states``."""


class DatabaseBackend(QueueBackend):
    """The ``jobs.Job`` table is the queue: the row is the task."""

    alias = DEFAULT_DB_ALIAS

    def take_node(self, node_id: int, *, reason: str) -> int:
        held = handout.take_running(node_id, alias=self.alias)
        handout.hand_out_again(held, reason=reason, alias=self.alias)
        return len(held)

    def hand_out_lost(self, node_id: int, acks: Sequence[AckId]) -> int:
        return handout.hand_out_lost_rows(node_id, acks, alias=self.alias)

    def hand_back(self, node_id: int, acks: Sequence[AckId]) -> int:
        return handout.hand_back_rows(node_id, acks, alias=self.alias)

    def rejoin(self, node_id: int) -> None:
        pass  # the claim itself reads the node's row: nothing else to clear

    def running_counts(self, node_ids: Sequence[int]) -> dict[int, int]:
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
        return rows.insert_rows(tasks, queue=queue)

    def failure_target(self, task: dict[str, Any]) -> FailureTarget | None:
        job = (
            Job.objects.filter(task_id=str(task.get("id") or ""))
            .only("attempt", "max_attempts", "job_name")
            .first()
        )
        if job is None:
            return None
        return FailureTarget(
            attempt=job.attempt, max_attempts=job.max_attempts, job_name=job.job_name
        )

    def record_failure(self, *, claim: AckId | None, **fields: Any) -> bool:
        # The reporting node must still own the row at that attempt.
        return record_failure(**fields, owner=current_node_id())

    def succeeded_after_failure(self, task: dict[str, Any]) -> bool:
        owner = current_node_id()
        return not (
            owner is not None
            and Job.objects.filter(task_id=str(task.get("id") or ""))
            .exclude(owner=owner, attempt=int(task["attempt"]))
            .exists()
        )

    def requeue(self, budgets: dict[int, int]) -> set[int]:
        return set(budgets)  # the row's own update is the retry

    def remove_waiting(self, row_ids: Sequence[int]) -> set[int]:
        return set(row_ids)  # locked rows in a waiting state: deleting them is the removal

    def running(self, *, limit: int) -> list[dict[str, Any]]:
        # Ordered by the index (state, created_at): the longest-running rows are
        # rarely the newest, and sorting every running row would defeat the LIMIT.
        rows = Job.objects.filter(state=Job.State.RUNNING).order_by("created_at", "id")
        return list(rows.values(*RUNNING_FIELDS)[:limit])

    def depth(
        self, queue: str | None = None, *, states: Sequence[str] = ALL_STATES
    ) -> dict[str, dict[str, Any]]:
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


class StockBrokerBackend(DatabaseBackend):
    """django-q2's own brokers (ORM, Redis, ...): tasks go through the broker's
    ``enqueue`` one by one, with no unique keys and no retries of ours."""

    def enqueue(self, tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
        from django_q.brokers import get_broker
        from django_q.signing import SignedPackage

        broker = get_broker(queue)
        for task in tasks:
            broker.enqueue(SignedPackage.dumps(task))
        return [task["id"] for task in tasks]


def empty_depth() -> dict[str, Any]:
    return {state: 0 for state in Job.State.values} | {"oldest_queued": None}


_current: dict[tuple[int, str], QueueBackend] = {}


def current() -> QueueBackend:
    """The backend of the configured broker (``Q_CLUSTER["broker_class"]``)."""
    name = Conf.BROKER_CLASS or ""
    key = (os.getpid(), name)
    backend = _current.get(key)
    if backend is None:
        broker_class = import_string(name) if name else None
        factory = getattr(broker_class, "backend_class", StockBrokerBackend)
        backend = _current[key] = factory()
    return backend
