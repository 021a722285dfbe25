"""Resume a paused queue: idle nodes are woken and claim its tasks at once."""

from jobs.pauses_cli import QueueCommand


class Command(QueueCommand):
    help = "Resume a paused queue (a cluster name)."
    verb = "resume"
