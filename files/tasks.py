"""Background jobs of the files app (autodiscovered by jobs.engine.registry)."""

from __future__ import annotations

from uuid import UUID

from files import cleanup
from jobs.engine.registry import Every, job


@job(
    "files.purge_tablo",
    # A tablo with many thousands of files takes a few S3 round trips per 1000.
    timeout=1800,
    max_attempts=10,
    unique=lambda tablo_id: f"purge_tablo:{tablo_id}",
    # Two purges of one tablo never overlap (an operator's retry of a dead one included),
    # and a mass deletion of tablos reaches S3 at most 30 purges a minute.
    concurrency=1,
    concurrency_key=lambda tablo_id: str(tablo_id),
    rate=(30, 60.0),
)
def purge_tablo(tablo_id: str) -> dict[str, int]:
    """Delete the objects and rows of the deleted tablo ``tablo_id``."""
    report = cleanup.purge_tablo_files(tablo_id=UUID(tablo_id))
    return report.raise_for_errors(f"purge of tablo {tablo_id}").summary()


@job(
    "files.orphan_cleanup",
    timeout=3600,
    max_attempts=5,
    schedule=Every("orphan_cleanup", minutes=60),
    # It lists the whole bucket: one at a time across every node, whoever enqueued it.
    concurrency=1,
)
def orphan_cleanup() -> dict[str, int]:
    """Hourly: files whose tablo is gone, and stray objects with no row."""
    return cleanup.orphan_cleanup().raise_for_errors("orphan cleanup").summary()
