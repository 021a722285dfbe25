from __future__ import annotations

import uuid

import pytest

from files import tasks
from files.models import TabloFile
from jobs import registry
from tests.support.cleanup import make_tablo, put_file


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
