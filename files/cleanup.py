"""Keep storage and database in agreement: purge a deleted tablo's files, clean up orphans.

The order is always object first, row second: a crash in between leaves a row
pointing at a missing object, which the next run finishes (a missing object
counts as deleted); the other order would leak objects nobody can find.

Rows are read in keyset batches by primary key (never all at once), with no
transaction or row lock held across the storage calls (which can take seconds
each). Two runs (or a purge and an orphan run) may therefore work on the same
batch; deleting an object twice is harmless, and the figures count the rows each
run's own ``DELETE`` removed, so no deletion is counted twice.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet

from files import storage_ops
from files.models import TabloFile
from jobs.engine.progress import report_progress
from tablos.models import Tablo

logger = structlog.get_logger(__name__)

BATCH_SIZE = 1000  # rows per batch: one DeleteObjects request on S3
STRAY_PREFIX = "tablos/"
# Any constant works; it only has to be the same in every process.
_STRAY_PASS_LOCK = 0x7AB10C1E


class CleanupFailed(Exception):
    """Raised by a job when some deletions failed; the message says how many and why."""


@dataclass
class CleanupReport:
    rows_scanned: int = 0
    objects_deleted: int = 0
    rows_deleted: int = 0
    stray_objects_deleted: int = 0
    rows_skipped_live: int = 0
    errors: int = 0
    error_reasons: Counter[str] = field(default_factory=Counter)
    aborted: str | None = None  # set when the storage failed a whole request
    rows_pass_ms: int = 0
    stray_pass_ms: int = 0
    duration_ms: int = 0

    def add_error(self, reason: str, count: int = 1) -> None:
        self.errors += count
        self.error_reasons[reason] += count

    def summary(self) -> dict[str, Any]:
        return {
            "rows_scanned": self.rows_scanned,
            "objects_deleted": self.objects_deleted,
            "rows_deleted": self.rows_deleted,
            "stray_objects_deleted": self.stray_objects_deleted,
            "rows_skipped_live": self.rows_skipped_live,
            "errors": self.errors,
            "rows_pass_ms": self.rows_pass_ms,
            "stray_pass_ms": self.stray_pass_ms,
            "duration_ms": self.duration_ms,
        }

    def failure_message(self, what: str) -> str:
        reasons = "; ".join(
            f"{count} x {reason}" for reason, count in self.error_reasons.most_common(5)
        )
        message = f"{what}: {self.errors} error(s)"
        if self.aborted:
            message += f", stopped early because the storage failed a request ({self.aborted})"
        message += f"; {reasons}" if reasons else ""
        message += (
            f". Deleted {self.rows_deleted} row(s) and {self.objects_deleted} object(s) "
            "before that; rows whose object was not deleted are kept for the next attempt."
        )
        return message

    def raise_for_errors(self, what: str) -> CleanupReport:
        if self.errors:
            raise CleanupFailed(self.failure_message(what))
        return self


def _orphan_rows() -> QuerySet[TabloFile]:
    # NOT EXISTS anti-join; each probe is a primary-key lookup on tablos_tablo.
    return TabloFile.objects.filter(~Exists(Tablo.objects.filter(id=OuterRef("tablo_id"))))


def _read_batch(queryset: QuerySet[TabloFile], after: uuid.UUID | None, size: int) -> list[tuple]:
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    return list(queryset.order_by("id").values_list("id", "storage_key", "tablo_id")[:size])


def _delete_batch(*, rows: list[tuple], storage: Storage, report: CleanupReport) -> None:
    """Delete the objects of ``rows``, then the rows whose object is gone."""
    tablo_ids = {tablo_id for _, _, tablo_id in rows}
    # Re-checked right before touching storage: a row read as orphan must not lose
    # its object if its tablo exists after all (a racing transaction committed).
    live = set(Tablo.objects.filter(id__in=tablo_ids).values_list("id", flat=True))
    if live:
        report.rows_skipped_live += sum(1 for row in rows if row[2] in live)
        rows = [row for row in rows if row[2] not in live]
    if not rows:
        return
    # The rows' tablos are gone (re-checked above): their directories may go too.
    result = storage_ops.delete_objects(
        storage=storage, names=[key for _, key, _ in rows], empty_dirs=2
    )
    for reason in result.errors.values():
        report.add_error(reason)
    done = set(result.deleted)
    ids = [row_id for row_id, key, _ in rows if key in done]
    if ids:
        deleted, _ = TabloFile.objects.filter(id__in=ids).delete()
        report.rows_deleted += deleted
        # Counted from the rows this run removed: two runs racing on one batch never
        # both claim the same object.
        report.objects_deleted += deleted


def _delete_rows(
    *, queryset: QuerySet[TabloFile], storage: Storage, report: CleanupReport, batch_size: int
) -> None:
    after: uuid.UUID | None = None
    while True:
        rows = _read_batch(queryset, after, batch_size)
        if not rows:
            return
        after = rows[-1][0]
        report.rows_scanned += len(rows)
        _delete_batch(rows=rows, storage=storage, report=report)
        report_progress(
            done=report.rows_scanned,
            message=f"orphan rows: {report.rows_scanned} scanned, {report.rows_deleted} deleted",
        )


@contextlib.contextmanager
def _stray_pass_lock() -> Iterator[bool]:
    """True if this run may do the stray-object pass (one run at a time on PostgreSQL)."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_STRAY_PASS_LOCK])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_STRAY_PASS_LOCK])


def _delete_stray_objects(*, storage: Storage, report: CleanupReport, older_than: datetime) -> None:
    if not storage_ops.can_list(storage):
        logger.warning("stray object pass skipped", reason=f"cannot list {type(storage).__name__}")
        return
    with _stray_pass_lock() as acquired:
        if not acquired:
            logger.info("stray object pass skipped", reason="another run holds it")
            return
        pages = storage_ops.iter_old_objects(
            storage=storage, prefix=STRAY_PREFIX, older_than=older_than
        )
        for names in pages:
            if not names:
                continue
            known = set(
                TabloFile.objects.filter(storage_key__in=names).values_list(
                    "storage_key", flat=True
                )
            )
            stray = [name for name in names if name not in known]
            if not stray:
                continue
            result = storage_ops.delete_objects(storage=storage, names=stray)
            report.stray_objects_deleted += len(result.deleted)
            for reason in result.errors.values():
                report.add_error(reason)
            report_progress(
                done=report.rows_scanned,
                message=f"stray objects: {report.stray_objects_deleted} deleted",
            )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def purge_tablo_files(
    *, tablo_id: uuid.UUID, storage: Storage | None = None, batch_size: int = BATCH_SIZE
) -> CleanupReport:
    """Delete every file of the deleted tablo ``tablo_id``: objects first, then rows.

    Safe to run twice; does nothing while the tablo still exists.
    """
    storage = storage or default_storage
    report = CleanupReport()
    started = time.monotonic()
    if Tablo.objects.filter(id=tablo_id).exists():
        logger.warning("tablo purge skipped", tablo_id=str(tablo_id), reason="tablo exists")
        return report
    try:
        _delete_rows(
            queryset=TabloFile.objects.filter(tablo_id=tablo_id),
            storage=storage,
            report=report,
            batch_size=batch_size,
        )
    except storage_ops.StorageUnavailable as exc:
        report.aborted = str(exc)
        report.add_error(f"storage unavailable: {exc}")
    report.duration_ms = _ms_since(started)
    logger.info("tablo purge finished", tablo_id=str(tablo_id), **report.summary())
    return report


def orphan_cleanup(
    *,
    storage: Storage | None = None,
    grace_seconds: int | None = None,
    batch_size: int = BATCH_SIZE,
    now: datetime | None = None,
) -> CleanupReport:
    """Delete files whose tablo is gone, then objects under ``tablos/`` that have no row.

    A stray object is only deleted once older than the grace period, so an upload
    that has written its object but not yet its row is never touched.
    """
    storage = storage or default_storage
    if grace_seconds is None:
        grace_seconds = settings.ORPHAN_GRACE_SECONDS
    older_than = (now or datetime.now(tz=UTC)) - timedelta(seconds=grace_seconds)
    report = CleanupReport()
    started = time.monotonic()
    try:
        _delete_rows(queryset=_orphan_rows(), storage=storage, report=report, batch_size=batch_size)
        report.rows_pass_ms = _ms_since(started)
        _delete_stray_objects(storage=storage, report=report, older_than=older_than)
        report.stray_pass_ms = _ms_since(started) - report.rows_pass_ms
    except storage_ops.StorageUnavailable as exc:
        # Endpoint down or credentials refused: every later request would fail the
        # same way, so stop here; no row was deleted for an object not deleted.
        report.aborted = str(exc)
        report.add_error(f"storage unavailable: {exc}")
    report.duration_ms = _ms_since(started)
    logger.info("orphan cleanup finished", **report.summary())
    return report
