"""A signed-in owner and her tablo, for the upload and view tests."""

import pytest

from tests.support.web import make_tablo, make_user


@pytest.fixture
def ann():
    return make_user("ann")


@pytest.fixture
def tablo(ann):
    return make_tablo(ann)


@pytest.fixture
def client_ann(client, ann):
    client.force_login(ann)
    return client
