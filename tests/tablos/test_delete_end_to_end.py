"""Deleting a tablo in the browser, then a real worker removing its files."""

import pytest
from django.urls import reverse

from files.models import TabloFile
from jobs.models import Job
from tablos.models import Tablo
from tests.support.cluster import worker_env
from tests.support.web import make_tablo, make_user, queued_purges, upload


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_deleted_tablo_files_are_purged_by_the_worker(storage, client, worker_factory):
    ann = make_user("ann")
    client.force_login(ann)
    tablo = make_tablo(ann)
    keep = make_tablo(ann, "Keep")
    for name in ("a.txt", "b.txt"):
        client.post(reverse("tablos:upload", args=[tablo.id]), {"file": upload(name, b"bye")})
    client.post(reverse("tablos:upload", args=[keep.id]), {"file": upload("c.txt", b"stay")})
    kept_key = TabloFile.objects.get(tablo_id=keep.id).storage_key
    assert len(storage.keys()) == 3

    response = client.post(reverse("tablos:delete", args=[tablo.id]))

    assert response.status_code == 302
    assert not Tablo.objects.filter(id=tablo.id).exists()
    assert queued_purges(tablo.id) == 1  # committed: the request ran in autocommit

    worker = worker_factory(env=worker_env(**storage.env))
    worker.wait_until(
        lambda: (
            not TabloFile.objects.filter(tablo_id=tablo.id).exists()
            and not Job.objects.filter(job_name="files.purge_tablo").exists()
        ),
        timeout=60,
        what="the purge job to delete the tablo's files and finish",
    )
    assert storage.keys() == {kept_key}
    assert list(TabloFile.objects.values_list("tablo_id", flat=True)) == [keep.id]
