"""``qcluster`` as a worker node: django-q2's command, with node registration,
heartbeats and supervision around the same cluster (``jobs.engine.cluster``)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from jobs.engine.cluster import SentinelDied, serve


class Command(DjangoQClusterCommand):  # type: ignore[misc]  # django-q2 ships no types
    help = (
        "Starts a django-q2 cluster as a worker node: it registers itself, beats, "
        "and its tasks are handed out again if it dies."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018 - refuse to start unsigned, as django-q2 does
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        try:
            serve(run_once=options.get("run_once", False))
        except SentinelDied as exc:
            raise CommandError(f"{exc}; the node's tasks were handed out again.") from None
