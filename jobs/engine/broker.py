"""The queue broker django-q2 enqueues through: ``Q_CLUSTER["broker_class"]``.

``DatabaseBroker`` is how ``async_task()`` (and every django-q2 API that enqueues:
chains, iterables, the scheduler) writes a task: one ``jobs.Job`` row, inserted on
the caller's connection and transaction, so a rolled-back transaction leaves no
task behind. On PostgreSQL the same statement sends the queue's ``pg_notify``
(delivered at commit, dropped on rollback). It also answers django-q2's questions
about the queue (``queue_size``, ``lock_size``, ``ping``, ``info``).

Nothing here claims or finishes a task: the worker processes of ``qcluster`` do
(``jobs.engine.worker``), and django-q2's pusher and monitor never run.
"""

# SQL text here is built only from model metadata (table and column names), never
# from input; every value is a parameter.

from __future__ import annotations

import uuid

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django_q.brokers import Broker
from django_q.conf import Conf
from django_q.signing import SignedPackage

from jobs.engine import transitions
from jobs.engine.rows import job_row_from_task
from jobs.models import Job


class DatabaseBroker(Broker):  # type: ignore[misc]  # django-q2 ships no types
    """django-q2 broker on the ``jobs.Job`` table (PostgreSQL and SQLite)."""

    # Set by Broker.__init__: the queue name (None: the cluster's), the alias, the info line.
    list_key: str | None
    connection: str
    _info: str | None

    @staticmethod
    def get_connection(list_key: str | None = None) -> str:
        """The database alias (django-q2 stores it as ``self.connection``)."""
        alias = Conf.ORM
        return alias if isinstance(alias, str) else DEFAULT_DB_ALIAS

    @property
    def db(self) -> BaseDatabaseWrapper:
        return connections[self.connection]

    @property
    def queue(self) -> str:
        return self.list_key or Conf.CLUSTER_NAME

    # -- enqueue ------------------------------------------------------------------
    def enqueue(self, task: str) -> int | str | None:
        """Insert the task; returns the row id, or None for a duplicate unique task."""
        try:
            package = SignedPackage.loads(task)
        except Exception:
            # Stored as given, like django-q2's brokers: the worker that claims it
            # cannot read it either, and makes it a dead task with a clear error.
            package = {"id": uuid.uuid4().hex, "func": "", "name": "unreadable payload"}
        # A registered job's declared cluster wins over the default broker's queue.
        queue = package.get("cluster") or self.queue
        return transitions.insert(
            job_row_from_task(package, queue=queue, payload=task), alias=self.connection
        )

    # -- inspection -----------------------------------------------------------------
    def queue_size(self) -> int:
        """Tasks waiting to run: queued and retrying rows of this queue."""
        return (
            Job.objects.using(self.connection)
            .filter(queue=self.queue, state__in=Job.CLAIMABLE_STATES)
            .count()
        )

    def lock_size(self) -> int:
        """Tasks claimed by a worker node and not finished yet."""
        return (
            Job.objects.using(self.connection)
            .filter(queue=self.queue, state=Job.State.RUNNING)
            .count()
        )

    def purge_queue(self) -> int:
        """Delete the tasks waiting in this queue (not running ones, not dead ones)."""
        return transitions.purge_queue(queue=self.queue, alias=self.connection)

    def delete_queue(self) -> int:
        return self.purge_queue()

    def ping(self) -> bool:
        with self.db.cursor() as cursor:
            cursor.execute("SELECT 1")
            alive: bool = cursor.fetchone() == (1,)
            return alive

    def info(self) -> str:
        if not self._info:
            how = "LISTEN/NOTIFY" if self.db.vendor == "postgresql" else "polling"
            self._info = f"DatabaseBroker {self.db.vendor} ({how}) [{self.connection}]"
        return self._info
