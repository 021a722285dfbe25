from __future__ import annotations

import uuid

import pytest

from files import cleanup
from files.models import TabloFile
from tests.support.cleanup import make_tablo, put_file

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
