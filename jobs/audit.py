"""What operators did, in the admin's history: one ``LogEntry`` per object acted on.

Every operator action (retry, discard, cancel, run now, pause, resume) writes
through ``log_actions``, from the admin or the command line alike; entries are
only written for a signed-in user (a command has no Django user to link to).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable

from django.contrib.admin.models import LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import models


def operator(user: AbstractBaseUser | None) -> str:
    """Who acted: the admin user, else the shell account running the command."""
    if user is not None:
        return user.get_username()[:150]
    try:
        return f"{getpass.getuser()} (command line)"[:150]
    except Exception:  # no passwd entry in this environment (a bare container)
        return "command line"


def log_actions(
    *,
    user: AbstractBaseUser | None,
    model: type[models.Model],
    objects: Iterable[tuple[str, str]],
    flag: int,
    message: str,
) -> None:
    """One entry per ``(object id, object repr)``, linked to ``model``'s admin page."""
    if user is None or user.pk is None:
        return
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    LogEntry.objects.bulk_create(
        [
            LogEntry(
                user_id=user.pk,
                content_type=content_type,
                object_id=object_id,
                object_repr=object_repr[:200],
                action_flag=flag,
                change_message=message,
            )
            for object_id, object_repr in objects
        ]
    )
