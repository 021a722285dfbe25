import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from files import services as file_services
from files.models import TabloFile
from tablos.models import Tablo
from tests.support.web import make_tablo, make_user, queued_purges, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", None)
    client.force_login(admin)
    return client


@pytest.fixture
def data(local_storage):
    ann = make_user("ann")
    ann.email = "ann@example.com"
    ann.save()
    tablo = make_tablo(ann, "Holiday")
    tablo_file = file_services.file_upload(tablo=tablo, uploaded=upload("beach.jpg", b"x" * 3000))
    other = file_services.file_upload(
        tablo=make_tablo(make_user("bob"), "Work"), uploaded=upload("plan.txt", b"p")
    )
    return tablo, tablo_file, other


def test_admin_pages_open(admin_client, data):
    tablo, tablo_file, _ = data
    urls = [
        reverse("admin:tablos_tablo_changelist"),
        reverse("admin:tablos_tablo_change", args=[tablo.id]),
        reverse("admin:tablos_tablo_add"),
        reverse("admin:files_tablofile_changelist"),
        reverse("admin:files_tablofile_change", args=[tablo_file.id]),
    ]
    for url in urls:
        assert admin_client.get(url).status_code == 200, url


def test_tablo_changelist_shows_file_count_and_total_size(admin_client, data):
    file_services.file_upload(tablo=data[0], uploaded=upload("more.txt", b"y" * 1000))
    response = admin_client.get(reverse("admin:tablos_tablo_changelist"))
    rows = {t.name: (t.file_count, t.total_bytes) for t in response.context["cl"].result_list}
    assert rows == {"Holiday": (2, 4000), "Work": (1, 1)}
    assert "3.9\xa0KB" in response.content.decode()


def test_file_changelist_shows_human_sizes(admin_client, data):
    page = admin_client.get(reverse("admin:files_tablofile_changelist")).content.decode()
    assert "2.9\xa0KB" in page
    assert "beach.jpg" in page


@pytest.mark.parametrize(
    ("model", "term", "expected"),
    [
        ("tablos_tablo", "Holiday", ["Holiday"]),
        ("tablos_tablo", "bob", ["Work"]),
        ("files_tablofile", "beach", ["beach.jpg"]),
        ("files_tablofile", "ann", ["beach.jpg"]),
        ("files_tablofile", "ann@example", ["beach.jpg"]),
        ("files_tablofile", "bob", ["plan.txt"]),
    ],
)
def test_search_by_name_and_owner(admin_client, data, model, term, expected):
    response = admin_client.get(reverse(f"admin:{model}_changelist"), {"q": term})
    assert sorted(str(obj) for obj in response.context["cl"].result_list) == expected


def test_changelists_skip_the_full_count(admin_client, data):
    for model in ["tablos_tablo", "files_tablofile"]:
        response = admin_client.get(reverse(f"admin:{model}_changelist"), {"q": "a"})
        assert response.context["cl"].show_full_result_count is False


def test_admin_tablo_delete_enqueues_the_purge(
    admin_client, data, django_capture_on_commit_callbacks
):
    tablo, _, _ = data
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:tablos_tablo_delete", args=[tablo.id]), {"post": "yes"}
        )
    assert response.status_code == 302
    assert not Tablo.objects.filter(id=tablo.id).exists()
    assert queued_purges(tablo.id) == 1


def test_admin_file_delete_removes_the_object(admin_client, data, local_storage):
    _, tablo_file, other = data
    response = admin_client.post(
        reverse("admin:files_tablofile_delete", args=[tablo_file.id]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not TabloFile.objects.filter(id=tablo_file.id).exists()
    assert local_storage.keys() == {other.storage_key}
