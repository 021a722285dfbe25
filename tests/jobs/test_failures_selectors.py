from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.failures.selectors import failed_groups, failed_jobs
from jobs.models import Job
from tests.support.failures import failed_rows


@pytest.mark.django_db
def test_groups_count_by_signature_biggest_first_with_the_latest_failure() -> None:
    now = timezone.now().replace(microsecond=0)
    failed_rows(3, message="disk full", failed_at=now - timedelta(hours=1))
    failed_rows(1, message="timeout", error_type="OSError", failed_at=now)

    groups = failed_groups(failed_jobs(), limit=10)

    assert [(g["error_signature"], g["count"]) for g in groups] == [
        ("RuntimeError: disk full #", 3),
        ("OSError: timeout #", 1),
    ]
    # failed_rows spaces a batch's failures a second apart, newest first.
    assert [g["last_failed_at"] for g in groups] == [now - timedelta(hours=1), now]


@pytest.mark.django_db
def test_groups_follow_the_filters_for_counts_and_latest_failure() -> None:
    now = timezone.now().replace(microsecond=0)
    failed_rows(2, message="disk full", state=Job.State.RETRYING, failed_at=now)
    failed_rows(2, message="disk full", failed_at=now - timedelta(days=1))

    [group] = failed_groups(failed_jobs(state=Job.State.DEAD), limit=10)

    assert (group["count"], group["last_failed_at"]) == (2, now - timedelta(days=1))
    assert failed_groups(failed_jobs(), limit=1)[0]["count"] == 4
    assert failed_groups(failed_jobs(error="no such text"), limit=10) == []
