"""``pause_queue`` and ``resume_queue``: one command body, two verbs."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs import pauses


class QueueCommand(BaseCommand):
    verb = ""  # "pause" or "resume"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue", help="the queue: a cluster name (Q_CLUSTER_NAME)")
        parser.add_argument("--json", action="store_true", help="print the status as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        action = pauses.pause_queue if self.verb == "pause" else pauses.resume_queue
        try:
            status = action(queue=options["queue"], user=None)
        except pauses.QueueError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(status.as_dict(), indent=2))
            return
        if status.paused:
            since = f" since {status.paused_at:%Y-%m-%d %H:%M:%S %Z} by {status.paused_by}"
            head = "Paused" if status.changed else "Already paused"
            self.stdout.write(f"{head}: queue {status.queue!r}{since}.")
        else:
            head = "Resumed" if status.changed else "Not paused"
            self.stdout.write(f"{head}: queue {status.queue!r}.")
