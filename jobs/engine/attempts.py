"""Writing a failed attempt down: the Job row's new state and one JobAttempt.

Every path that ends an attempt in failure goes through ``record_failure``: a
worker (an exception in the task, a payload that cannot be read:
``jobs.engine.failing``), the supervisor (a worker process that died) and the node
registry (a worker node that died holding the task). The update
is conditional on the attempt number, so a late report about an old attempt never
overwrites the state of a newer claim; a report from the node that ran the task
also requires that node to still own it (a node declared dead lost its claims).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from jobs.engine import results
from jobs.models import Job, JobAttempt

_VOLATILE = re.compile(
    r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"  # uuids
    r"|0x[0-9a-f]+"  # addresses
    r"|[0-9a-f]{32}"  # task ids
    r"|\d+(?:\.\d+)?",  # numbers
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def error_signature(error_type: str, message: str) -> str:
    """The error with ids, numbers and quoted values removed: equal for 'the same' error."""
    first_line = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    normalized = _VOLATILE.sub("#", _QUOTED.sub("'…'", first_line))
    return f"{error_type}: {normalized}"[:255]


@dataclass(frozen=True)
class WorkerInfo:
    cluster: str = ""
    host: str = ""
    pid: int | None = None


def record_failure(
    *,
    task_id: str,
    attempt: int,
    error_type: str,
    error_message: str,
    traceback: str = "",
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    retry_at: datetime | None,
    worker: WorkerInfo | None = None,
    owner: int | None = None,
) -> bool:
    """Record a failed attempt; ``retry_at=None`` makes the task dead.

    ``owner``: the node reporting its own run. The report is dropped (no state
    change, no history) when the row is now someone else's: that node lost the
    task, which was handed out again with a ``WorkerLost`` attempt. Returns False
    when the Job row is gone or belongs to a later attempt or another node (without
    ``owner``, a report about a gone row is still written to the history).
    """
    now = finished_at or timezone.now()
    worker = worker or WorkerInfo()
    fields = {
        "last_failed_at": now,
        "last_error_type": error_type[:255],
        "last_error_message": error_message,
        "error_signature": error_signature(error_type, error_message),
        "claimed_at": None,
        "claimed_by": "",
        "started_at": None,
    }
    if retry_at is None:
        fields.update(state=Job.State.DEAD, run_at=now)
    else:
        fields.update(state=Job.State.RETRYING, run_at=retry_at)
    payload = None
    with transaction.atomic():
        job = (
            Job.objects.filter(task_id=task_id)
            .only(
                "id", "func", "job_name", "first_failed_at", "owner", "attempt", "state", "payload"
            )
            .first()
        )
        updated = 0
        if job is None and owner is not None:
            return False  # finished or discarded elsewhere: the reporting node lost it
        if job is not None:
            if owner is not None and (
                job.owner != owner or job.attempt != attempt or job.state != Job.State.RUNNING
            ):
                return False
            if job.first_failed_at is None:
                fields["first_failed_at"] = now
            current = Job.objects.filter(id=job.id, attempt=attempt)
            if owner is not None:
                current = current.filter(owner=owner, state=Job.State.RUNNING)
            updated = current.update(**fields, owner=None)
            if updated:
                payload = job.payload
        JobAttempt.objects.create(
            task_id=task_id,
            attempt=attempt,
            func=job.func if job is not None else "",
            job_name=job.job_name if job is not None else "",
            succeeded=False,
            started_at=started_at,
            finished_at=now,
            error_type=error_type[:255],
            error_message=error_message,
            traceback=traceback,
            cluster=worker.cluster[:100],
            host=worker.host[:255],
            pid=worker.pid,
        )
    if payload is not None:
        # As django-q2 does: every failed attempt is the task's result (a Failure) until
        # a later attempt succeeds and replaces it, and hook= runs for each.
        results.save_failure(
            payload,
            final=retry_at is None,
            result=f"{error_message} : {traceback}" if traceback else error_message,
            attempt=attempt,
            started=started_at,
            stopped=now,
            cluster=worker.cluster,
        )
    return updated == 1
