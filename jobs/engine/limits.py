"""Flow control: which limited tasks a claim may take, and when a worker looks for them.

A job declares ``concurrency=N`` (optionally per ``concurrency_key``) and ``rate=(N,
seconds)`` (optionally per ``rate_key``); a queue may have a limit of its own
(``JOBS_QUEUE_CONCURRENCY``). The row carries its keys and limits from its enqueue
(``jobs.engine.rows``); the claim (``jobs.engine.transitions.claim_limited``) locks the
keys it may take from, counts what the database holds for them and asks ``choose``
which candidates fit. A task that would exceed a limit is simply not claimed: no
attempt is used, nothing is written to it, and the next eligible task is taken.

``Gate`` is the worker's side: whether its next claim takes the limited path. Tasks
without limits never pay for it: while the queue has no ready limited task, a worker
claims with the plain statement and looks again at most every ``CHECK_SECONDS``, or at
once when a NOTIFY of its queue wakes it (an enqueue, a freed slot); and when the last
look found none, it looks with a probe of the index (``transitions.limited_ready``) before
it runs the claim with limits.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

# A worker not on the limited path looks for ready limited tasks at most this often.
CHECK_SECONDS = 0.5
# A claim takes at most this share of a key's free slots (at least one): a binding
# limit is spread over workers, one task each, instead of queueing behind one worker;
# a loose limit still lets a worker take a full batch.
SHARE = 4
# On PostgreSQL a key so far from its limit that every worker process of the queue
# could claim this many at once without reaching it is claimed under a shared lock
# (claimers side by side), at most this many per claim.
LOOSE = 10
# The most ready limited rows one claim looks at, oldest first (a key at its
# concurrency limit is left out of them; one at its rate limit is not).
SCAN = 64


def scan(batch: int) -> int:
    """The candidates a claim of ``batch`` looks at and locks: enough to pass over a few
    held back by a limit, few enough that locking them costs little and a concurrent
    claimer (which skips the rows this claim has locked) still finds its own."""
    return min(SCAN, batch + 8)


@dataclass(frozen=True)
class Candidate:
    row_id: int
    limit_key: str | None
    limit_max: int | None
    rate_key: str | None
    rate_max: int | None


@dataclass(frozen=True)
class Usage:
    """What the database holds for the candidates' keys, read under their locks."""

    running: dict[str, int] = field(default_factory=dict)  # limit_key -> running rows
    started: dict[str, int] = field(default_factory=dict)  # rate_key -> starts in window
    queue_running: int = 0


@dataclass(frozen=True)
class Choice:
    row_ids: list[int]
    room: int  # how many tasks without limits may join the claim
    blocked: bool  # a candidate was left for a limit (not for the batch size)


def share(free: int) -> int:
    """How many of a key's ``free`` slots one claim may take."""
    return max(1, free // SHARE) if free > 0 else 0


def choose(
    candidates: Sequence[Candidate], usage: Usage, *, batch: int, queue_limit: int | None
) -> Choice:
    """The candidates this claim takes, in their order, within every limit.

    The n-th candidate of a key (in claim order) is taken only if n is within that key's
    share of its free slots, whether or not the ones before it were taken (the
    PostgreSQL claim ranks them the same way, in SQL). A rate-limited key gives at most
    one task per claim: the tasks of one claim run one after the other, and a rated task
    should start right after the claim that counted it.
    """
    if queue_limit is not None:
        batch = min(batch, share(queue_limit - usage.queue_running))
    taken: list[int] = []
    limit_rank: Counter[str] = Counter()
    rate_rank: Counter[str] = Counter()
    blocked = False
    for c in candidates:
        fits = True
        if c.limit_key is not None and c.limit_max is not None:
            limit_rank[c.limit_key] += 1
            free = c.limit_max - usage.running.get(c.limit_key, 0)
            fits = limit_rank[c.limit_key] <= share(free)
        if c.rate_key is not None and c.rate_max is not None:
            rate_rank[c.rate_key] += 1
            free = c.rate_max - usage.started.get(c.rate_key, 0)
            fits = fits and rate_rank[c.rate_key] <= min(free, 1)
        if not fits:
            blocked = True
        elif len(taken) < batch:
            taken.append(c.row_id)
    if queue_limit is not None and batch == 0:
        blocked = True
    return Choice(row_ids=taken, room=max(batch - len(taken), 0), blocked=blocked)


class Gate:
    """Whether a worker's next claim takes the limited path (see the module docstring).

    On a queue with a limit of its own every claim does. Otherwise: after a limited claim
    that took something, the next one does too; after one that found nothing ready, or
    only tasks held back by a limit, the worker claims plainly until ``wake()`` (a NOTIFY
    of its queue: a new task, a slot freed by a finish) or ``CHECK_SECONDS`` pass, or
    sooner when a rate window frees a start.
    """

    def __init__(self, *, queue_limit: int | None) -> None:
        self.queue_limit = queue_limit
        self.next_at = 0.0
        self.rate_at = 0.0  # when a rate window frees a start a held-back task waits for
        # The last look found no ready limited task: probe the index before the claim.
        self.probe = False

    def due(self) -> bool:
        return self.queue_limit is not None or time.monotonic() >= self.next_at

    def after(self, *, took: int, found: int, retry_in: float | None) -> None:
        now = time.monotonic()
        self.probe = not found
        self.rate_at = now + max(retry_in, 0.0) if retry_in is not None else 0.0
        if took:
            self.next_at = 0.0
        elif retry_in is not None:
            self.next_at = now + min(max(retry_in, 0.0), CHECK_SECONDS)
        else:
            self.next_at = now + CHECK_SECONDS

    def wake(self) -> None:
        self.next_at = 0.0
        self.probe = False

    def wait_bound(self, poll: float) -> float:
        """The longest idle wait: a rate window may free a start before any NOTIFY."""
        if not self.rate_at:
            return poll
        return min(poll, max(self.rate_at - time.monotonic(), 0.0) + 0.005)
