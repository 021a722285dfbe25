"""Several files in one upload: each is kept or refused on its own."""

from unittest import mock

import pytest
from django.db import DatabaseError, OperationalError
from django.urls import reverse

from files import services
from files.models import TabloFile
from files.uploads import MAX_FILES_PER_UPLOAD
from tests.support.web import upload

pytestmark = pytest.mark.django_db


def post_files(client, tablo, files):
    return client.post(
        reverse("tablos:upload", args=[tablo.id]),
        {"file": [upload(name, content) for name, content in files]},
        follow=True,
    )


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def stored(storage) -> dict[str, bytes]:
    """Every stored object's bytes by display name, read back from the storage."""
    result = {}
    for tablo_file in TabloFile.objects.all():
        with storage.storage.open(tablo_file.storage_key, "rb") as handle:
            result[tablo_file.original_name] = handle.read()
    assert storage.keys() == set(TabloFile.objects.values_list("storage_key", flat=True))
    return result


def test_every_file_of_one_upload_is_stored(storage, client_ann, tablo):
    response = post_files(
        client_ann, tablo, [("a.txt", b"alpha"), ("b.txt", b"bravo"), ("c.txt", b"charlie")]
    )

    assert messages_of(response) == [("success", "3 files uploaded: “a.txt”, “b.txt” and “c.txt”.")]
    assert stored(storage) == {"a.txt": b"alpha", "b.txt": b"bravo", "c.txt": b"charlie"}
    assert response.redirect_chain[-1][0] == reverse("tablos:detail", args=[tablo.id])


def test_an_empty_file_among_good_ones_is_refused_and_the_others_kept(storage, client_ann, tablo):
    response = post_files(
        client_ann, tablo, [("a.txt", b"alpha"), ("empty.txt", b""), ("c.txt", b"charlie")]
    )

    assert messages_of(response) == [
        ("success", "2 files uploaded: “a.txt” and “c.txt”."),
        ("error", "“empty.txt” is empty: nothing was stored."),
    ]
    assert stored(storage) == {"a.txt": b"alpha", "c.txt": b"charlie"}


def test_an_oversized_file_among_good_ones_is_skipped_while_streaming(
    storage, client_ann, tablo, settings
):
    settings.FILE_UPLOAD_MAX_BYTES = 100 * 1024
    response = post_files(
        client_ann,
        tablo,
        [("small.bin", b"s" * 1000), ("big.bin", b"x" * (150 * 1024)), ("fits.bin", b"f" * 2000)],
    )

    assert messages_of(response) == [
        ("success", "2 files uploaded: “small.bin” and “fits.bin”."),
        (
            "error",
            "“big.bin” was not uploaded: files may be at most 100.0\xa0KB. Nothing was stored.",
        ),
    ]
    assert stored(storage) == {"small.bin": b"s" * 1000, "fits.bin": b"f" * 2000}


def test_a_storage_failure_on_one_file_keeps_the_others(storage, client_ann, tablo):
    real_create = TabloFile.objects.create

    def create(**fields):
        if fields["original_name"] == "b.txt":
            raise DatabaseError("constraint trouble")
        return real_create(**fields)

    with mock.patch.object(TabloFile.objects, "create", side_effect=create):
        response = post_files(client_ann, tablo, [("a.txt", b"alpha"), ("b.txt", b"bravo")])

    assert messages_of(response) == [
        ("success", "“a.txt” uploaded."),
        (
            "error",
            "“b.txt” could not be stored because of a server problem. "
            "Nothing was kept of it; please try again.",
        ),
    ]
    assert stored(storage) == {"a.txt": b"alpha"}


def test_files_past_the_per_upload_count_are_refused_by_name(local_storage, client_ann, tablo):
    files = [(f"f{i:02d}.txt", b"x") for i in range(MAX_FILES_PER_UPLOAD + 2)]

    response = post_files(client_ann, tablo, files)

    kept = {name for name, _ in files[:MAX_FILES_PER_UPLOAD]}
    assert set(stored(local_storage)) == kept
    assert messages_of(response)[1:] == [
        (
            "error",
            f"“{name}” was not uploaded: at most {MAX_FILES_PER_UPLOAD} files can be sent "
            "at once. Send it again on its own.",
        )
        for name, _ in files[MAX_FILES_PER_UPLOAD:]
    ]


def test_a_database_outage_stops_the_upload(local_storage, tablo):
    uploads = [upload("a.txt", b"alpha"), upload("b.txt", b"bravo")]
    with (
        mock.patch.object(TabloFile.objects, "create", side_effect=OperationalError("down")),
        pytest.raises(OperationalError),
    ):
        services.files_upload(tablo=tablo, uploads=uploads)
    assert local_storage.keys() == set()  # the object of the failed row was removed


def test_the_upload_form_accepts_several_files(client_ann, tablo):
    page = client_ann.get(reverse("tablos:detail", args=[tablo.id])).content.decode()
    assert 'type="file" name="file"' in page
    assert "multiple" in page.split('type="file"', 1)[1].split(">", 1)[0]
