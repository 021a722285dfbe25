"""Helpers for the web tests (tablos and files views)."""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from jobs.models import Job
from tablos.models import Tablo
from tablos.services import PURGE_TASK


def make_user(username: str) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username=username)  # no password: tests force_login


def make_tablo(owner: AbstractBaseUser, name: str = "Holiday") -> Tablo:
    return Tablo.objects.create(owner=owner, name=name)


def upload(name: str, content: bytes, content_type: str = "text/plain") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


def _task_args(payload: str) -> tuple:
    try:
        task = SignedPackage.loads(payload)
    except Exception:
        return ()
    return tuple(task.get("args", ()))


def queued_purges(tablo_id: uuid.UUID) -> int:
    """Queue rows that purge ``tablo_id``, in whichever table the broker uses.

    ``jobs.Job`` once the project broker is configured, django-q2's ``OrmQ``
    before; counting both keeps the assertion true across that change.
    """
    func = PURGE_TASK
    jobs = sum(
        1
        for payload in Job.objects.filter(func=func).values_list("payload", flat=True)
        if _task_args(payload) == (str(tablo_id),)
    )
    orm = sum(
        1
        for row in OrmQ.objects.all()
        if row.func() == func and tuple(row.task.get("args", ())) == (str(tablo_id),)
    )
    return jobs + orm
