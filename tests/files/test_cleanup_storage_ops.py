from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.core.files.storage import default_storage

from files import storage_ops
from tests.support.cleanup import put_object
from tests.support.s3 import EmptyOkEndpoint


def test_s3_deletes_go_in_requests_of_at_most_1000_keys_and_missing_keys_count(s3_storage):
    storage = s3_storage.storage
    real = [put_object(storage, uuid.uuid4(), f"r{i}.txt") for i in range(2)]
    missing = [f"tablos/{uuid.uuid4()}/{i}/gone.txt" for i in range(2498)]
    sizes = []
    storage.connection.meta.client.meta.events.register(
        "before-parameter-build.s3.DeleteObjects",
        lambda params, **_: sizes.append(len(params["Delete"]["Objects"])),
    )

    result = storage_ops.delete_objects(storage=storage, names=[*real, *missing])

    assert sizes == [1000, 1000, 500]
    assert len(result.deleted) == 2500
    assert result.errors == {}
    assert s3_storage.keys() == set()


def test_a_failed_request_raises_storage_unavailable(s3_storage, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": "no-such-bucket"},
        },
    }
    with pytest.raises(storage_ops.StorageUnavailable, match="NoSuchBucket"):
        storage_ops.delete_objects(storage=default_storage, names=["tablos/x/y/z.txt"])


def test_local_listing_pages_old_files_only(local_storage):
    storage = local_storage.storage
    names = [put_object(storage, uuid.uuid4(), f"f{i}.txt") for i in range(5)]
    future = datetime.now(tz=UTC).replace(year=2100)
    past = datetime(2000, 1, 1, tzinfo=UTC)

    pages = list(storage_ops._local_old_objects(storage, "tablos/", future, page_size=2))
    old = list(storage_ops.iter_old_objects(storage=storage, prefix="tablos/", older_than=past))

    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(name for page in pages for name in page) == sorted(names)
    assert old == []


def test_s3_objects_count_as_deleted_only_when_the_response_says_so(s3_storage):
    names = [put_object(s3_storage.storage, uuid.uuid4(), f"k{i}.txt") for i in range(3)]
    with EmptyOkEndpoint() as endpoint:
        storage = endpoint.storage(s3_storage.server, s3_storage.bucket)
        result = storage_ops.delete_objects(storage=storage, names=names)
    assert result.deleted == []
    assert result.errors == dict.fromkeys(names, storage_ops.UNCONFIRMED)
    assert s3_storage.keys() == set(names)
