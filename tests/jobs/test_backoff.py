from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.engine import backoff, registry
from tests.support import failures  # noqa: F401 (registers the test jobs)


def test_default_follows_attempt_to_the_fourth_within_ten_percent() -> None:
    rng = random.Random(1)
    for attempt in (1, 2, 3, 5, 8):
        for _ in range(50):
            delay = backoff.default_delay(attempt, rng=rng)
            assert attempt**4 * 0.9 <= delay <= attempt**4 * 1.1


def test_jitter_spreads_tasks_that_failed_together() -> None:
    rng = random.Random(2)
    delays = {round(backoff.default_delay(4, rng=rng), 3) for _ in range(20)}
    assert len(delays) > 10


def test_capped_at_the_maximum(settings) -> None:
    settings.JOBS_BACKOFF_MAX_SECONDS = 3600
    assert backoff.default_delay(20) == 3600.0


def test_scale_setting_shrinks_the_curve(settings) -> None:
    settings.JOBS_BACKOFF_SCALE = 0.01
    delay = backoff.default_delay(3, rng=random.Random(3))
    assert 81 * 0.01 * 0.9 <= delay <= 81 * 0.01 * 1.1


def test_per_job_override_wins() -> None:
    spec = registry.get("tests.custom_policy")
    assert backoff.delay_seconds(1, spec=spec) == 7
    assert backoff.delay_seconds(3, spec=spec) == 21


def test_negative_override_is_treated_as_now() -> None:
    spec = registry.JobSpec(name="x", func=print, backoff=lambda attempt: -5)
    assert backoff.delay_seconds(1, spec=spec) == 0.0


def test_retry_at_adds_the_delay() -> None:
    now = timezone.now()
    spec = registry.get("tests.custom_policy")
    assert backoff.retry_at(2, spec=spec, now=now) == now + timedelta(seconds=14)


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_below_one_counts_as_first(attempt: int) -> None:
    assert 0.9 <= backoff.default_delay(attempt, rng=random.Random(4)) <= 1.1
