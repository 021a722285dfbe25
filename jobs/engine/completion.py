"""Transactional jobs: a task's database writes and its completion commit together.

A job declared ``@job("billing.close_invoice", transactional=True)`` runs inside
``transaction.atomic()`` on the queue's database, and before that transaction
commits its queue row is deleted (if this node still owns that attempt), its
result row written and a chain's next link enqueued. So:

* the task commits: its writes and its completion are one fact. If the worker dies
  after the commit, the row is gone and nothing runs again;
* the task raises or times out: everything rolls back, the row is still this
  attempt's, and the failure hook retries it by policy;
* the node lost the task (declared dead, handed out again): the delete finds no row,
  ``ClaimLost`` rolls the writes back, and only the new attempt's writes count.

Effects outside the database (S3, e-mail) are not covered: make those idempotent
(object first, row second, as ``files.cleanup`` does).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker

from jobs.engine import context, results, transitions
from jobs.engine.execute import check_result


class ClaimLost(RuntimeError):
    """This node no longer owns the task: its writes are rolled back."""


def transactional(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a job's function so that it and its completion are one transaction."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        claim = context.running()
        if claim is None or claim.row_id is None:  # called directly, or sync=True: no row
            with transaction.atomic():
                return func(*args, **kwargs)
        with transaction.atomic(using=claim.alias):
            value = func(*args, **kwargs)
            check_result(value)  # a refused result rolls the task's writes back
            complete(claim, value)
        claim.task[results.COMPLETED_IN_WORKER] = True
        return value

    run.transactional = True  # type: ignore[attr-defined]
    return run


def complete(claim: context.Run, value: Any) -> None:
    """Inside the task's transaction: delete its row, write its result, chain on."""
    assert claim.row_id is not None  # the transactional wrapper runs only claimed tasks
    where = transitions.finish_in_transaction(
        claim.alias, row_id=claim.row_id, attempt=claim.attempt, owner=context.current_node_id()
    )
    if where:
        raise ClaimLost(
            f"task {claim.task.get('id')} attempt {claim.attempt} is no longer this "
            f"node's ({where}): its writes are rolled back"
        )
    finished = {**claim.task, "result": value, "success": True, "stopped": timezone.now()}
    results.write_in_transaction(claim.alias, finished, broker=get_broker())
