"""Writes of tablos."""

from __future__ import annotations

import structlog
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from jobs import registry
from tablos.models import Tablo

log = structlog.get_logger(__name__)

PURGE_JOB = "files.purge_tablo"


def tablo_create(*, owner: AbstractBaseUser, name: str) -> Tablo:
    tablo = Tablo(owner=owner, name=name.strip())
    tablo.full_clean()
    tablo.save()
    log.info("tablo created", tablo_id=str(tablo.id), owner_id=owner.pk)
    return tablo


def tablo_delete(*, tablo: Tablo) -> None:
    """Delete the tablo row now; its files are removed by the ``files.purge_tablo`` job.

    Deleting thousands of objects inside a request would time out, so the row
    goes at once (the tablo disappears for its owner) and the purge job is
    queued in the same transaction (a unique job: see jobs.registry._defer), so
    workers see it only once the deletion commits: it never runs for a deletion
    that was rolled back. ``TabloFile`` rows have no foreign key to the tablo
    precisely so that they survive here and the job can find the objects to delete.
    """
    tablo_id = tablo.id  # Model.delete() clears the pk on the instance
    owner_id = tablo.owner_id
    with transaction.atomic():
        tablo.delete()
        purge_task_id = registry.enqueue(PURGE_JOB, str(tablo_id))
    # With the request id bound by the middleware: a purge is traced to its request.
    log.info(
        "tablo deleted", tablo_id=str(tablo_id), owner_id=owner_id, purge_task_id=purge_task_id
    )
