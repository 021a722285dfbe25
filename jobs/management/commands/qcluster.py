"""``qcluster``: django-q2's command and options, running this project's worker node
(``jobs.engine.supervisor``: a supervisor and its worker processes)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from jobs.engine.supervisor import serve


class Command(DjangoQClusterCommand):  # type: ignore[misc]  # django-q2 ships no types
    help = (
        "Starts a worker node: a supervisor and Q_CLUSTER['workers'] worker processes "
        "that claim, run and finish tasks; its tasks are handed out again if it dies."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018 - refuse to start unsigned, as django-q2 does
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        serve(run_once=options.get("run_once", False))
