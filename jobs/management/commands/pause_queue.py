"""Pause a queue: nodes stop claiming its tasks within a second; running tasks finish."""

from jobs.pauses_cli import QueueCommand


class Command(QueueCommand):
    help = "Pause a queue (a cluster name): its tasks stay queued until resume_queue."
    verb = "pause"
