"""A database outage is a short 503 page that says to try again, and no upload is half-stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.urls import reverse

from files.models import TabloFile
from tests.support.s3 import free_port
from tests.support.web import make_tablo, make_user, upload

pytestmark = pytest.mark.django_db(transaction=True)

TRY_AGAIN = "Please try again in 30 seconds."


class Outage:
    """Point the connection at a database that is not there: every query then fails
    the way it does while the server is down (connection refused / cannot open)."""

    def __init__(self) -> None:
        self.saved = dict(connection.settings_dict)

    def down(self) -> None:
        connection.close()
        if connection.vendor == "postgresql":
            connection.settings_dict["PORT"] = str(free_port())
        else:
            connection.settings_dict["NAME"] = "/nonexistent-tablo-dir/db.sqlite3"

    def up(self) -> None:
        connection.close()
        connection.settings_dict.update(self.saved)


@pytest.fixture
def outage() -> Iterator[Outage]:
    outage = Outage()
    yield outage
    outage.up()


@pytest.fixture
def ann_client() -> tuple[Client, object]:
    ann = make_user("ann")
    client = Client(raise_request_exception=False)
    client.force_login(ann)
    return client, make_tablo(ann)


def assert_try_again_page(response) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    body = response.content.decode()
    assert "Tablo is temporarily unavailable" in body
    assert TRY_AGAIN in body


def test_pages_answer_503_try_again_while_the_database_is_down(ann_client, outage) -> None:
    client, tablo = ann_client
    outage.down()
    assert_try_again_page(client.get(reverse("tablos:list")))
    assert_try_again_page(client.get(reverse("tablos:detail", args=[tablo.id])))
    assert_try_again_page(client.get(reverse("login")))


def test_an_upload_whose_row_cannot_be_written_is_a_503_and_leaves_nothing(
    storage, ann_client, outage, monkeypatch
) -> None:
    client, tablo = ann_client
    default_storage.exists("x")  # sets the lazy storage up for this test's settings
    storage_class = type(default_storage._wrapped)
    real_save = storage_class.save
    saved: list[str] = []

    def save_then_lose_the_database(self, name, content, **kwargs):
        saved.append(real_save(self, name, content, **kwargs))
        outage.down()  # the object is stored; the row write comes next
        return saved[-1]

    monkeypatch.setattr(storage_class, "save", save_then_lose_the_database)
    response = client.post(
        reverse("tablos:upload", args=[tablo.id]), {"file": upload("a.txt", b"data")}
    )
    assert_try_again_page(response)
    assert len(saved) == 1
    assert storage.keys() == set()  # the object was removed again
    outage.up()
    assert not TabloFile.objects.exists()


def test_other_server_errors_keep_the_plain_500(ann_client, monkeypatch) -> None:
    client, _ = ann_client
    from tablos import views

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.selectors, "tablo_list", broken)
    response = client.get(reverse("tablos:list"))
    assert response.status_code == 500
    assert TRY_AGAIN not in response.content.decode()
