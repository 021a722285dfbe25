import re

import pytest
from django.urls import reverse

from files import services as file_services
from files.models import TabloFile
from files.views import PAGE_SIZE as FILES_PAGE_SIZE
from tablos.models import Tablo
from tablos.views import PAGE_SIZE
from tests.support.web import make_tablo, make_user, queued_purges, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann():
    return make_user("ann")


@pytest.fixture
def client_ann(client, ann):
    client.force_login(ann)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_list_shows_only_my_tablos_newest_first(client_ann, ann):
    make_tablo(ann, "First")
    make_tablo(ann, "Second")
    make_tablo(make_user("bob"), "Bob's secret")

    response = client_ann.get(reverse("tablos:list"))

    assert response.status_code == 200
    assert [t.name for t in response.context["tablos"]] == ["Second", "First"]
    assert "Bob&#x27;s secret" not in response.content.decode()


def test_empty_list_says_so(client_ann):
    assert "No tablos yet." in client_ann.get(reverse("tablos:list")).content.decode()


def test_create_tablo(client_ann, ann):
    response = client_ann.post(reverse("tablos:list"), {"name": "  Trip  "}, follow=True)

    tablo = Tablo.objects.get()
    assert (tablo.owner, tablo.name) == (ann, "Trip")
    assert response.redirect_chain[-1][0] == reverse("tablos:detail", args=[tablo.id])
    assert messages_of(response) == ["Tablo “Trip” created."]


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_create_rejects_bad_names(client_ann, name):
    response = client_ann.post(reverse("tablos:list"), {"name": name})
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not Tablo.objects.exists()


def test_detail_lists_files_with_human_sizes(local_storage, client_ann, ann):
    tablo = make_tablo(ann)
    file_services.file_upload(tablo=tablo, uploaded=upload("big.bin", b"x" * 2048))

    page = client_ann.get(reverse("tablos:detail", args=[tablo.id])).content.decode()

    assert "big.bin" in page
    assert "2.0\xa0KB" in page
    assert '<span class="file-type truncate" title="text/plain">text/plain</span>' in page
    assert 'enctype="multipart/form-data"' in page


def test_delete_tablo_queues_the_purge_in_the_same_transaction(
    storage, client_ann, ann, django_capture_on_commit_callbacks
):
    tablo = make_tablo(ann, "Trip")
    tablo_file = file_services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_ann.post(reverse("tablos:delete", args=[tablo.id]))
    # The purge is a unique job: its row commits (or rolls back) with the deletion,
    # nothing is left to run after the commit, and workers only see it then.
    assert callbacks == []
    assert not Tablo.objects.filter(id=tablo.id).exists()
    assert queued_purges(tablo.id) == 1

    assert response.status_code == 302
    followed = client_ann.get(response["Location"])
    assert messages_of(followed) == [
        "Tablo “Trip” deleted. Its files are being removed in the background."
    ]
    # The files are the purge job's work, not the request's.
    assert TabloFile.objects.filter(id=tablo_file.id).exists()
    assert storage.keys() == {tablo_file.storage_key}


def test_get_on_tablo_delete_only_asks(client_ann, ann):
    tablo = make_tablo(ann, "Trip")
    response = client_ann.get(reverse("tablos:delete", args=[tablo.id]))
    assert response.status_code == 200
    assert "Delete “Trip”?" in response.content.decode()
    assert Tablo.objects.filter(id=tablo.id).exists()
    assert queued_purges(tablo.id) == 0


def test_files_are_paginated(client_ann, ann):
    tablo = make_tablo(ann)
    TabloFile.objects.bulk_create(
        TabloFile(
            tablo_id=tablo.id,
            storage_key=f"tablos/{tablo.id}/{i}/f{i}.txt",
            original_name=f"f{i}.txt",
            content_type="text/plain",
            size_bytes=1,
        )
        for i in range(FILES_PAGE_SIZE + 3)
    )
    url = reverse("tablos:detail", args=[tablo.id])
    first = client_ann.get(url)
    second = client_ann.get(url, {"page": 2})
    assert len(first.context["files"]) == FILES_PAGE_SIZE
    assert len(second.context["files"]) == 3
    assert "Page 1 of 2" in first.content.decode()
    names = {f.original_name for f in first.context["files"]} | {
        f.original_name for f in second.context["files"]
    }
    assert len(names) == FILES_PAGE_SIZE + 3


def test_tablos_are_paginated(client_ann, ann):
    Tablo.objects.bulk_create(Tablo(owner=ann, name=f"t{i}") for i in range(PAGE_SIZE + 1))
    assert len(client_ann.get(reverse("tablos:list")).context["tablos"]) == PAGE_SIZE
    last = client_ann.get(reverse("tablos:list"), {"page": 2})
    assert len(last.context["tablos"]) == 1


def _events(caplog, name: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == name]


def test_create_and_delete_are_logged_with_the_request_and_the_purge_task(
    storage, client_ann, ann, caplog
):
    from jobs.models import Job

    caplog.set_level("INFO")
    client_ann.post(reverse("tablos:list"), {"name": "Trip"}, HTTP_X_REQUEST_ID="req-create")
    tablo = Tablo.objects.get(name="Trip")
    client_ann.post(reverse("tablos:delete", args=[tablo.id]), HTTP_X_REQUEST_ID="req-delete")

    [created] = _events(caplog, "tablo created")
    [deleted] = _events(caplog, "tablo deleted")
    assert (created["tablo_id"], created["owner_id"]) == (str(tablo.id), ann.pk)
    assert created["request_id"] == "req-create"
    assert (deleted["tablo_id"], deleted["request_id"]) == (str(tablo.id), "req-delete")
    purge = Job.objects.get(job_name="files.purge_tablo")
    assert deleted["purge_task_id"] == purge.task_id


@pytest.mark.parametrize("name", ["a\x00b", "x" * 100_000, "   ", "", "\t"])
def test_hostile_tablo_names_are_refused_and_create_nothing(client_ann, name):
    response = client_ann.post(reverse("tablos:list"), {"name": name})
    assert response.status_code == 400
    assert response.context["form"].errors["name"]
    assert not Tablo.objects.exists()


def test_a_file_field_sent_as_text_is_a_clear_error(client_ann, ann, storage):
    tablo = make_tablo(ann, "Trip")
    response = client_ann.post(
        reverse("tablos:upload", args=[tablo.id]), {"file": "not a file"}, follow=True
    )
    assert messages_of(response) == ["Choose a file to upload."]
    assert not TabloFile.objects.exists()
    assert storage.keys() == set()


def test_dates_on_pages_name_their_time_zone(client_ann, ann, storage):
    tablo = make_tablo(ann, "Trip")
    file_services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"data"))
    listing = client_ann.get(reverse("tablos:list")).content.decode()
    assert f"{tablo.created_at:%Y-%m-%d %H:%M} UTC</time>" in listing
    detail = client_ann.get(reverse("tablos:detail", args=[tablo.id])).content.decode()
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">', detail)
