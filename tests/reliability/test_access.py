"""A sweep over every routed URL with real ids: others get 404, state changes need POST + CSRF.

Routes are read from the URLconf (tests/reliability/urls.py), so a page added
later is covered without editing this file. Parameters are filled by name:
``tablo_id`` with a tablo, ``file_id`` with a file.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from files import services as file_services
from files.models import TabloFile
from jobs.models import Job
from tablos.models import Tablo
from tests.reliability.urls import Route, private_routes
from tests.support.web import make_tablo, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def owned(local_storage):
    alice = make_user("alice")
    tablo = make_tablo(alice, "Alice's")
    tablo_file = file_services.file_upload(
        tablo=tablo, uploaded=SimpleUploadedFile("a.txt", b"alice", content_type="text/plain")
    )
    return alice, tablo, tablo_file


def id_routes() -> list[Route]:
    routes = [r for r in private_routes() if r.converters]
    assert routes, "no route takes an id: the sweep would check nothing"
    unknown = {k for r in routes for k in r.converters} - {"tablo_id", "file_id"}
    assert not unknown, f"add sample values for route parameters {unknown}"
    return routes


def url_for(route: Route, tablo: Tablo, tablo_file: TabloFile) -> str:
    return route.url(tablo_id=tablo.id, file_id=tablo_file.id)


def assert_untouched(tablo: Tablo, tablo_file: TabloFile, storage) -> None:
    assert Tablo.objects.filter(id=tablo.id).exists()
    assert TabloFile.objects.filter(id=tablo_file.id).exists()
    stored = storage.keys()
    assert tablo_file.storage_key in stored
    assert not Job.objects.exists(), "a job was enqueued"


def test_another_users_ids_answer_404_for_every_method(owned, local_storage) -> None:
    _, tablo, tablo_file = owned
    client = Client()
    client.force_login(make_user("mallory"))
    for route in id_routes():
        url = url_for(route, tablo, tablo_file)
        for method in ("get", "post"):
            data = {"file": SimpleUploadedFile("x.txt", b"x")} if method == "post" else {}
            status = getattr(client, method)(url, data).status_code
            # 405: the method is refused before any lookup, so it reveals nothing either.
            assert status in (404, 405), (method, route.route, status)
    assert_untouched(tablo, tablo_file, local_storage)
    assert TabloFile.objects.count() == 1


def test_state_changes_without_csrf_token_are_refused(owned, local_storage) -> None:
    alice, tablo, tablo_file = owned
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    for route in private_routes():
        url = url_for(route, tablo, tablo_file)
        data = {"file": SimpleUploadedFile("x.txt", b"x"), "name": "new"}
        status = client.post(url, data).status_code
        assert status in (403, 405), (route.route, status)
    assert_untouched(tablo, tablo_file, local_storage)
    assert Tablo.objects.count() == 1
    assert TabloFile.objects.count() == 1


def test_get_never_changes_anything(owned, local_storage) -> None:
    alice, tablo, tablo_file = owned
    client = Client()
    client.force_login(alice)
    for route in private_routes():
        response = client.get(url_for(route, tablo, tablo_file))
        assert response.status_code in (200, 302, 405), route.route
    assert_untouched(tablo, tablo_file, local_storage)
