"""Exceptions a task raises to steer the failure hook."""

from __future__ import annotations


class DoNotRetry(Exception):
    """Raise (or subclass) in a task to make this failure final: no retry, the task is dead."""


class Snooze(Exception):
    """Raise (or return) in a task to run it again after ``seconds``, without using an attempt.

    The task goes back to the queue with its attempt count unchanged and its ``snoozes``
    count raised by one; nothing is recorded as a failure.
    """

    def __init__(self, seconds: float) -> None:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            raise TypeError(f"Snooze takes a number of seconds (got {seconds!r})") from None
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"Snooze takes a number of seconds from 0 up (got {seconds!r})")
        super().__init__(f"snoozed for {value:g} s")
        self.seconds = value


class Cancelled(Exception):
    """Raise in a task that saw ``cancel_requested()``: it ends ``cancelled``, not failed.

    Any way the attempt ends once its cancel was requested counts as cancelled; raising
    this only says so clearly.
    """
