from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.core.files.storage import default_storage

from files import tasks
from files.cleanup import CleanupFailed
from files.models import TabloFile
from jobs.engine import registry
from jobs.models import Job
from tablos.services import tablo_delete
from tests.support.cleanup import make_tablo, put_file, refuse
from tests.support.runtime import log_events
from tests.support.s3 import MotoServer


def test_jobs_are_registered_with_a_unique_key_per_tablo():
    purge = registry.get("files.purge_tablo")
    orphan = registry.get("files.orphan_cleanup")

    assert purge.func is tasks.purge_tablo
    assert orphan.func is tasks.orphan_cleanup
    tablo_id = str(uuid.uuid4())
    assert purge.unique(tablo_id) == f"purge_tablo:{tablo_id}"
    assert orphan.unique is None
    assert purge.timeout >= 600


@pytest.mark.django_db
def test_purges_are_limited_per_tablo_and_in_rate_and_the_cleanup_runs_alone():
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    registry.enqueue("files.purge_tablo", first, on_commit=False)
    registry.enqueue("files.purge_tablo", second, on_commit=False)
    registry.enqueue("files.orphan_cleanup", on_commit=False)
    rows = Job.objects.order_by("id").values_list(
        "limit_key", "limit_max", "rate_key", "rate_max", "rate_seconds"
    )
    assert list(rows) == [
        (f"files.purge_tablo:{first}", 1, "files.purge_tablo", 30, 60.0),
        (f"files.purge_tablo:{second}", 1, "files.purge_tablo", 30, 60.0),
        ("files.orphan_cleanup", 1, None, None, None),
    ]


@pytest.mark.django_db
def test_purge_task_deletes_the_files_of_a_deleted_tablo(storage):
    tablo = make_tablo()
    put_file(storage.storage, tablo.id)
    tablo_id = str(tablo.id)
    tablo.delete()

    summary = tasks.purge_tablo(tablo_id)

    assert summary["rows_deleted"] == 1
    assert summary["errors"] == 0
    assert not TabloFile.objects.exists()
    assert storage.keys("tablos/") == set()


@pytest.fixture
def own_s3(settings, tmp_path) -> Iterator[tuple[MotoServer, str]]:
    """An S3 endpoint of this test's own, so that stopping it harms no other test."""
    server = MotoServer(log_path=tmp_path / "moto.log")
    server.start()
    bucket = "tablo-down"
    server.client().create_bucket(Bucket=bucket)
    settings.STORAGES = {**settings.STORAGES, "default": server.storage_settings(bucket)}
    yield server, bucket
    server.stop()


@pytest.mark.slow
@pytest.mark.django_db
def test_endpoint_down_keeps_every_row_and_the_job_fails_then_a_retry_finishes(own_s3):
    server, bucket = own_s3
    gone = make_tablo()
    rows = [put_file(default_storage, gone.id, f"f{i}.txt") for i in range(3)]
    gone.delete()
    server.stop()

    with pytest.raises(CleanupFailed) as failed:
        tasks.orphan_cleanup()

    message = str(failed.value)
    assert message.startswith("orphan cleanup: 1 error(s), stopped early because the storage")
    assert "EndpointConnectionError" in message
    assert "Deleted 0 row(s) and 0 object(s)" in message
    assert TabloFile.objects.count() == 3

    # The endpoint comes back (moto keeps nothing across a restart: the objects
    # are gone, which a retry must accept as deleted).
    server.start()
    server.client().create_bucket(Bucket=bucket)
    summary = tasks.orphan_cleanup()

    assert (summary["rows_deleted"], summary["errors"]) == (len(rows), 0)
    assert not TabloFile.objects.exists()


@pytest.mark.django_db
def test_purge_task_fails_with_how_many_and_why(storage, monkeypatch):
    tablo = make_tablo()
    refused = put_file(storage.storage, tablo.id, "locked.txt")
    put_file(storage.storage, tablo.id, "free.txt")
    tablo_id = str(tablo.id)
    tablo.delete()
    refuse(storage, monkeypatch, {refused.storage_key})

    with pytest.raises(CleanupFailed) as failed:
        tasks.purge_tablo(tablo_id)

    assert str(failed.value).startswith(f"purge of tablo {tablo_id}: 1 error(s); 1 x ")
    assert list(TabloFile.objects.values_list("pk", flat=True)) == [refused.pk]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_deleting_a_tablo_purges_its_files_through_a_real_worker(storage, worker_factory):
    tablo = make_tablo()
    doomed = [put_file(storage.storage, tablo.id, f"f{i}.txt") for i in range(3)]
    other = make_tablo("other")
    kept = put_file(storage.storage, other.id)
    tablo_id = str(tablo.id)
    worker = worker_factory(**storage.env)

    tablo_delete(tablo=tablo)

    worker.wait_until(
        lambda: (
            not TabloFile.objects.filter(tablo_id=tablo_id).exists()
            and not Job.objects.filter(job_name="files.purge_tablo").exists()
        ),
        timeout=60,
        what="the purge job to delete the rows and be acknowledged",
    )
    assert storage.keys("tablos/") == {kept.storage_key}
    assert not {f.storage_key for f in doomed} & storage.keys()
    worker.wait_until(
        lambda: bool(log_events(worker.log(), "tablo purge finished")),
        timeout=10,
        what="the purge summary event",
    )
    (event,) = log_events(worker.log(), "tablo purge finished")
    assert (event["tablo_id"], event["errors"]) == (tablo_id, 0)

    # The orphan cleanup a starting worker runs may take the rows of the deleted tablo
    # first (both are limited jobs, claimed in turn): between them, each row once.
    def cleaned() -> int:
        return sum(e["rows_deleted"] for e in log_events(worker.log(), "orphan cleanup finished"))

    worker.wait_until(
        lambda: event["rows_deleted"] + cleaned() >= 3, timeout=10, what="every row's deletion"
    )
    assert event["rows_deleted"] + cleaned() == 3
