from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection

from files import cleanup
from files.models import TabloFile
from jobs.engine import context
from jobs.models import Job
from tests.support.cleanup import make_tablo, put_file, put_object, refuse
from tests.support.s3 import EmptyOkEndpoint
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db


def test_purge_deletes_objects_then_rows_of_one_tablo(storage):
    gone = make_tablo()
    kept = make_tablo()
    doomed = [put_file(storage.storage, gone.id, f"f{i}.txt") for i in range(3)]
    live = put_file(storage.storage, kept.id)
    gone_id = gone.id
    gone.delete()

    report = cleanup.purge_tablo_files(tablo_id=gone_id, batch_size=2)

    assert (report.rows_scanned, report.rows_deleted, report.objects_deleted) == (3, 3, 3)
    assert report.errors == 0
    assert not TabloFile.objects.filter(tablo_id=gone_id).exists()
    assert storage.keys("tablos/") == {live.storage_key}
    assert not {f.storage_key for f in doomed} & storage.keys()


def test_purge_twice_is_harmless(storage):
    gone = make_tablo()
    put_file(storage.storage, gone.id)
    gone_id = gone.id
    gone.delete()

    first = cleanup.purge_tablo_files(tablo_id=gone_id)
    second = cleanup.purge_tablo_files(tablo_id=gone_id)

    assert (first.rows_deleted, second.rows_deleted, second.errors) == (1, 0, 0)
    assert storage.keys("tablos/") == set()


def test_purge_of_a_live_tablo_deletes_nothing(storage):
    tablo = make_tablo()
    kept = put_file(storage.storage, tablo.id)

    report = cleanup.purge_tablo_files(tablo_id=tablo.id)

    assert report.rows_deleted == 0
    assert TabloFile.objects.filter(pk=kept.pk).exists()
    assert storage.keys("tablos/") == {kept.storage_key}


def test_purge_finishes_after_a_crash_between_object_and_row(storage):
    tablo_id = uuid.uuid4()
    row = put_file(storage.storage, tablo_id)
    storage.storage.delete(row.storage_key)  # the object went, the crash kept the row

    report = cleanup.purge_tablo_files(tablo_id=tablo_id)

    assert (report.rows_deleted, report.errors) == (1, 0)
    assert not TabloFile.objects.exists()


def orphans_and_live(
    storage, *, orphans: int, live: int
) -> tuple[list[TabloFile], list[TabloFile]]:
    gone = make_tablo("gone")
    kept = make_tablo("kept")
    orphan_rows = [put_file(storage.storage, gone.id, f"o{i}.txt") for i in range(orphans)]
    live_rows = [put_file(storage.storage, kept.id, f"l{i}.txt") for i in range(live)]
    # Rows of a tablo id that never existed are orphans too (a row inserted late).
    gone.delete()
    return orphan_rows, live_rows


def test_orphan_rows_are_removed_object_first_and_live_files_kept(storage, monkeypatch):
    orphan_rows, live_rows = orphans_and_live(storage, orphans=5, live=3)
    real_delete = cleanup.storage_ops.delete_objects
    calls = []

    def delete_objects_checking_order(*, storage, names, **options):
        names = list(names)
        # The rows are still there while their objects are deleted ...
        assert TabloFile.objects.filter(storage_key__in=names).count() == len(names)
        result = real_delete(storage=storage, names=names, **options)
        calls.append(names)
        return result

    monkeypatch.setattr(cleanup.storage_ops, "delete_objects", delete_objects_checking_order)

    report = cleanup.orphan_cleanup(batch_size=2, grace_seconds=3600)

    # ... and go only after them: three batches of at most two keys.
    assert sorted(k for batch in calls for k in batch) == sorted(r.storage_key for r in orphan_rows)
    assert [len(batch) for batch in calls] == [2, 2, 1]
    timings = {"rows_pass_ms": 0, "stray_pass_ms": 0, "duration_ms": 0}
    assert report.summary() | timings == {
        "rows_scanned": 5,
        "objects_deleted": 5,
        "rows_deleted": 5,
        "stray_objects_deleted": 0,
        "rows_skipped_live": 0,
        "errors": 0,
        **timings,
    }
    assert set(TabloFile.objects.values_list("pk", flat=True)) == {r.pk for r in live_rows}
    assert storage.keys("tablos/") == {r.storage_key for r in live_rows}


def test_nothing_to_do_is_a_clean_run(storage):
    _, live_rows = orphans_and_live(storage, orphans=0, live=2)

    report = cleanup.orphan_cleanup(grace_seconds=0)

    assert (report.rows_scanned, report.rows_deleted, report.stray_objects_deleted) == (0, 0, 0)
    assert report.errors == 0
    assert storage.keys("tablos/") == {r.storage_key for r in live_rows}


def test_stray_objects_older_than_the_grace_go_and_younger_stay(storage):
    tablo = make_tablo()
    live = put_file(storage.storage, tablo.id)
    old_stray = {put_object(storage.storage, tablo.id, f"old{i}.txt") for i in range(3)}
    outside = storage.storage.save("elsewhere/keep.txt", ContentFile(b"not ours"))
    # The cutoff comes right after the old objects, as the storage records times: S3
    # keeps LastModified to the second; a file's mtime comes from the kernel's coarse
    # clock, a few milliseconds behind the time read here, so the young one waits more.
    last_old = max(storage.storage.get_modified_time(name) for name in old_stray)
    step = timedelta(seconds=1 if storage.kind == "s3" else 0.05)
    cutoff = last_old + step
    young_from = cutoff if storage.kind == "s3" else cutoff + step
    wait_until(lambda: datetime.now(tz=UTC) >= young_from, timeout=5, what="the cutoff to pass")
    young_stray = put_object(storage.storage, tablo.id, "uploading.txt")
    assert storage.storage.get_modified_time(young_stray) >= cutoff

    report = cleanup.orphan_cleanup(grace_seconds=0, now=cutoff)

    assert report.stray_objects_deleted == 3
    assert report.errors == 0
    assert storage.keys() == {live.storage_key, young_stray, outside}
    assert not old_stray & storage.keys()


def test_a_row_of_a_live_tablo_is_never_deleted_even_if_read_as_orphan(storage, monkeypatch):
    # A tablo committed between the orphan read and the deletion (a racing
    # transaction): the re-check right before the storage call keeps its file.
    orphan_rows, _ = orphans_and_live(storage, orphans=2, live=0)
    racing = make_tablo("racing")
    raced = put_file(storage.storage, racing.id)
    real_claim = cleanup._read_batch
    claims = []

    def claim_seeing_racing_as_orphan(queryset, after, size):
        claims.append(after)
        if len(claims) > 1:
            return []
        return [*real_claim(queryset, after, size), (raced.pk, raced.storage_key, raced.tablo_id)]

    monkeypatch.setattr(cleanup, "_read_batch", claim_seeing_racing_as_orphan)

    report = cleanup.orphan_cleanup(grace_seconds=3600)

    assert (report.rows_deleted, report.rows_skipped_live) == (2, 1)
    assert list(TabloFile.objects.values_list("pk", flat=True)) == [raced.pk]
    assert storage.keys("tablos/") == {raced.storage_key}
    assert not {r.storage_key for r in orphan_rows} & storage.keys()


def test_partial_failure_keeps_exactly_the_refused_rows_and_fails(storage, monkeypatch):
    orphan_rows, live_rows = orphans_and_live(storage, orphans=6, live=1)
    # One refused key in each batch (batches go by primary key).
    by_pk = sorted(orphan_rows, key=lambda r: str(r.pk))
    refused = {by_pk[1].storage_key, by_pk[4].storage_key}
    refuse(storage, monkeypatch, refused)

    report = cleanup.orphan_cleanup(batch_size=4, grace_seconds=3600)

    assert (report.rows_scanned, report.rows_deleted, report.errors) == (6, 4, 2)
    assert set(TabloFile.objects.values_list("storage_key", flat=True)) == refused | {
        live_rows[0].storage_key
    }
    assert storage.keys("tablos/") == refused | {live_rows[0].storage_key}
    with pytest.raises(cleanup.CleanupFailed) as failed:
        report.raise_for_errors("orphan cleanup")
    message = str(failed.value)
    assert message.startswith("orphan cleanup: 2 error(s); 2 x ")
    assert ("AccessDenied" if storage.kind == "s3" else "PermissionError") in message
    assert "Deleted 4 row(s) and 4 object(s)" in message


def test_summary_event_is_logged(storage, caplog):
    orphans_and_live(storage, orphans=1, live=0)

    with caplog.at_level(logging.INFO, logger="files.cleanup"):
        cleanup.orphan_cleanup(grace_seconds=3600)

    events = [r.msg for r in caplog.records if r.name == "files.cleanup"]
    finished = [
        e for e in events if isinstance(e, dict) and e["event"] == "orphan cleanup finished"
    ]
    assert len(finished) == 1
    assert {k: finished[0][k] for k in ("rows_scanned", "objects_deleted", "rows_deleted")} == {
        "rows_scanned": 1,
        "objects_deleted": 1,
        "rows_deleted": 1,
    }
    assert {"stray_objects_deleted", "errors", "duration_ms"} <= finished[0].keys()


def run_concurrently(*funcs) -> list:
    """Run each of ``funcs`` in its own thread (own DB connection), released together."""
    barrier = threading.Barrier(len(funcs))
    results: list = [None] * len(funcs)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = funcs[index]()
        except BaseException as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(funcs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def assert_each_orphan_deleted_once(storage, reports, orphans: int, live_rows) -> None:
    assert all(isinstance(r, cleanup.CleanupReport) for r in reports), reports
    assert sum(r.errors for r in reports) == 0
    # Every orphan deleted exactly once across the runs: no double counting.
    assert sum(r.rows_deleted for r in reports) == orphans
    assert sum(r.objects_deleted for r in reports) == orphans
    assert set(TabloFile.objects.values_list("pk", flat=True)) == {r.pk for r in live_rows}
    assert storage.keys("tablos/") == {r.storage_key for r in live_rows}


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_delete_each_orphan_once_and_keep_live_files(storage):
    _, live_rows = orphans_and_live(storage, orphans=40, live=5)

    def run() -> cleanup.CleanupReport:
        return cleanup.orphan_cleanup(batch_size=4, grace_seconds=3600)

    reports = run_concurrently(run, run, run)

    assert_each_orphan_deleted_once(storage, reports, 40, live_rows)


@pytest.mark.django_db(transaction=True)
def test_purge_racing_with_orphan_cleanup_on_the_same_rows(storage):
    orphan_rows, live_rows = orphans_and_live(storage, orphans=30, live=2)
    gone_id = orphan_rows[0].tablo_id

    reports = run_concurrently(
        lambda: cleanup.purge_tablo_files(tablo_id=gone_id, batch_size=3),
        lambda: cleanup.orphan_cleanup(batch_size=3, grace_seconds=3600),
    )

    assert_each_orphan_deleted_once(storage, reports, 30, live_rows)


def test_progress_is_reported_to_the_running_job(storage):
    orphans_and_live(storage, orphans=5, live=0)
    job = Job.objects.create(task_id="a" * 32, queue="q", name="n", func="f", payload="")
    context.enter(context.Run(task_id=job.task_id, attempt=1, cluster="q", host="h", pid=1))
    try:
        cleanup.orphan_cleanup(batch_size=2, grace_seconds=3600)
    finally:
        context.enter(None)

    job.refresh_from_db()
    assert job.progress_done == 5
    assert job.progress_message == "orphan rows: 5 scanned, 5 deleted"
    assert job.progress_updated_at is not None


def test_purge_keeps_every_row_when_s3_answers_delete_with_an_empty_200(s3_storage):
    gone = make_tablo()
    files = [put_file(s3_storage.storage, gone.id, f"f{i}.txt") for i in range(5)]
    gone_id = gone.id
    gone.delete()
    with EmptyOkEndpoint() as endpoint:
        report = cleanup.purge_tablo_files(
            tablo_id=gone_id, storage=endpoint.storage(s3_storage.server, s3_storage.bucket)
        )
    assert (report.rows_deleted, report.objects_deleted, report.errors) == (0, 0, 5)
    assert TabloFile.objects.filter(tablo_id=gone_id).count() == 5
    assert s3_storage.keys("tablos/") == {f.storage_key for f in files}
    with pytest.raises(cleanup.CleanupFailed, match="5 error"):
        report.raise_for_errors("purge")


def test_no_transaction_is_open_while_the_storage_deletes(storage, monkeypatch):
    orphans_and_live(storage, orphans=6, live=1)
    gone = make_tablo()
    put_file(storage.storage, gone.id)
    gone_id = gone.id
    gone.delete()
    outside = len(connection.atomic_blocks)  # the test's own transaction
    depths: list[int] = []
    real_delete = cleanup.storage_ops.delete_objects

    def delete_objects(**kwargs):
        depths.append(len(connection.atomic_blocks) - outside)
        return real_delete(**kwargs)

    monkeypatch.setattr(cleanup.storage_ops, "delete_objects", delete_objects)
    cleanup.purge_tablo_files(tablo_id=gone_id, batch_size=2).raise_for_errors("purge")
    cleanup.orphan_cleanup(batch_size=2, grace_seconds=3600).raise_for_errors("orphans")
    assert depths
    assert set(depths) == {0}
