"""Writes of tablos."""

from __future__ import annotations

import structlog
from django.contrib.auth.models import User
from django.db import transaction
from django_q.tasks import async_task

from tablos.models import Tablo

logger = structlog.get_logger(__name__)

# By path, as django-q2 documents it: the job's declared policy applies (jobs.engine.registry).
PURGE_TASK = "files.tasks.purge_tablo"


def tablo_create(*, owner: User, name: str) -> Tablo:
    tablo = Tablo(owner=owner, name=name.strip())
    tablo.full_clean()
    tablo.save()
    logger.info("tablo created", tablo_id=str(tablo.id), owner_id=owner.pk)
    return tablo


def tablo_delete(*, tablo: Tablo) -> None:
    """Delete the tablo row now; its files are removed by the ``files.purge_tablo`` job.

    Deleting thousands of objects inside a request would time out, so the row
    goes at once (the tablo disappears for its owner) and the purge task is
    queued in the same transaction: on the database broker workers see it only
    once the deletion commits, and a purge that runs while the tablo still exists
    does nothing (the hourly orphan cleanup then takes its files). ``TabloFile``
    rows have no foreign key to the tablo precisely so that they survive here and
    the job can find the objects to delete.
    """
    tablo_id = tablo.id  # Model.delete() clears the pk on the instance
    owner_id = tablo.owner_id
    with transaction.atomic():
        tablo.delete()
        purge_task_id = async_task(PURGE_TASK, str(tablo_id))
    # With the request id bound by the middleware: a purge is traced to its request.
    logger.info(
        "tablo deleted", tablo_id=str(tablo_id), owner_id=owner_id, purge_task_id=purge_task_id
    )
