"""How long a failed task waits before its next attempt.

River's curve: ``attempt ** 4`` seconds, +/-10% jitter so that tasks that failed
together do not come back together, capped at ``JOBS_BACKOFF_MAX_SECONDS``.
A job may override it with ``@job(..., backoff=lambda attempt: seconds)``.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs.engine.specs import JobSpec

JITTER = 0.10


def default_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    base: float = max(attempt, 1) ** 4 * settings.JOBS_BACKOFF_SCALE
    jitter = (rng or random).uniform(-JITTER, JITTER)
    return min(base * (1 + jitter), float(settings.JOBS_BACKOFF_MAX_SECONDS))


def delay_seconds(
    attempt: int, *, spec: JobSpec | None = None, rng: random.Random | None = None
) -> float:
    """The job's own backoff if it declares one, else the default; never negative."""
    if spec is not None and spec.backoff is not None:
        return max(float(spec.backoff(attempt)), 0.0)
    return default_delay(attempt, rng=rng)


def retry_at(
    attempt: int,
    *,
    spec: JobSpec | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """When the task becomes claimable again after failed attempt ``attempt``."""
    return (now or timezone.now()) + timedelta(seconds=delay_seconds(attempt, spec=spec, rng=rng))
