"""Every page: login required, someone else's ids are 404, GET changes nothing."""

import uuid

import pytest
from django.urls import reverse

from files import selectors as file_selectors
from files import services as file_services
from files.models import TabloFile
from tablos import selectors as tablo_selectors
from tablos.models import Tablo
from tests.support.web import make_tablo, make_user, queued_purges, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_data(local_storage):
    bob = make_user("bob")
    tablo = make_tablo(bob, "Bob's")
    tablo_file = file_services.file_upload(tablo=tablo, uploaded=upload("b.txt", b"bob"))
    return tablo, tablo_file


def urls_for(tablo_id, file_id):
    """(method, url) of every page that takes an id."""
    return [
        ("get", reverse("tablos:detail", args=[tablo_id])),
        ("get", reverse("tablos:delete", args=[tablo_id])),
        ("post", reverse("tablos:delete", args=[tablo_id])),
        ("post", reverse("tablos:upload", args=[tablo_id])),
        ("get", reverse("files:download", args=[file_id])),
        ("get", reverse("files:delete", args=[file_id])),
        ("post", reverse("files:delete", args=[file_id])),
    ]


def test_other_users_ids_are_404_everywhere_and_change_nothing(client, bob_data, local_storage):
    tablo, tablo_file = bob_data
    client.force_login(make_user("ann"))

    for method, url in urls_for(tablo.id, tablo_file.id):
        data = {"file": upload("x.txt", b"x")} if url.endswith("/files/") else {}
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (method, url)

    assert Tablo.objects.filter(id=tablo.id).exists()
    assert list(TabloFile.objects.values_list("id", flat=True)) == [tablo_file.id]
    assert local_storage.keys() == {tablo_file.storage_key}
    assert queued_purges(tablo.id) == 0


def test_unknown_ids_are_404(client):
    client.force_login(make_user("ann"))
    for method, url in urls_for(uuid.uuid4(), uuid.uuid4()):
        assert getattr(client, method)(url).status_code == 404, (method, url)


def test_anonymous_is_sent_to_login(client, bob_data):
    tablo, tablo_file = bob_data
    pages = [("get", reverse("tablos:list")), ("post", reverse("tablos:list"))]
    for method, url in pages + urls_for(tablo.id, tablo_file.id):
        response = getattr(client, method)(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"] == f"{reverse('login')}?next={url}"
    assert Tablo.objects.count() == 1
    assert TabloFile.objects.count() == 1


def test_get_requests_change_nothing(client, local_storage):
    ann = make_user("ann")
    tablo = make_tablo(ann)
    tablo_file = file_services.file_upload(tablo=tablo, uploaded=upload("a.txt", b"a"))
    client.force_login(ann)

    for _method, url in urls_for(tablo.id, tablo_file.id):
        client.get(url)
    client.get(reverse("tablos:list"))

    assert Tablo.objects.filter(id=tablo.id).exists()
    assert TabloFile.objects.filter(id=tablo_file.id).exists()
    assert local_storage.keys() == {tablo_file.storage_key}
    assert queued_purges(tablo.id) == 0


def test_not_found_page_is_plain_and_reveals_nothing(client, bob_data, settings):
    settings.DEBUG = False
    tablo, _ = bob_data
    client.force_login(make_user("ann"))
    response = client.get(reverse("tablos:detail", args=[tablo.id]))
    assert response.status_code == 404
    body = response.content.decode()
    assert "This page does not exist, or it is not yours." in body
    assert "Bob" not in body


def test_selectors_answer_none_for_someone_elses_or_unknown_ids(bob_data):
    """No Http404 from selectors: "not yours" is a plain None and the views 404."""
    tablo, tablo_file = bob_data
    ann, bob = make_user("ann"), tablo.owner
    assert tablo_selectors.tablo_get_for_user(user=ann, tablo_id=tablo.id) is None
    assert tablo_selectors.tablo_get_for_user(user=bob, tablo_id=uuid.uuid4()) is None
    assert tablo_selectors.tablo_get_for_user(user=bob, tablo_id=tablo.id) == tablo
    assert file_selectors.file_get_for_user(user=ann, file_id=tablo_file.id) is None
    assert file_selectors.file_get_for_user(user=bob, file_id=tablo_file.id) == tablo_file
    tablo.delete()  # the file row stays for the purge job, but is no longer served
    assert file_selectors.file_get_for_user(user=bob, file_id=tablo_file.id) is None
