"""Writes of tablos."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from jobs import registry
from tablos.models import Tablo

PURGE_JOB = "files.purge_tablo"


def tablo_create(*, owner: AbstractBaseUser, name: str) -> Tablo:
    tablo = Tablo(owner=owner, name=name.strip())
    tablo.full_clean()
    tablo.save()
    return tablo


def tablo_delete(*, tablo: Tablo) -> None:
    """Delete the tablo row now; its files are removed by the ``files.purge_tablo`` job.

    Deleting thousands of objects inside a request would time out, so the row
    goes at once (the tablo disappears for its owner) and the purge job is
    enqueued after the commit: it never runs for a deletion that was rolled
    back. ``TabloFile`` rows have no foreign key to the tablo precisely so that
    they survive here and the job can find the objects to delete.
    """
    tablo_id = tablo.id  # Model.delete() clears the pk on the instance
    with transaction.atomic():
        tablo.delete()
        registry.enqueue(PURGE_JOB, str(tablo_id))
