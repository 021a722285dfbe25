from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from jobs.engine.worker import Worker
from tests.support import jobtable
from tests.support.django_tasks import TEST_QUEUE


@pytest.fixture
def staff(db) -> User:
    """Staff, signed in to the admin, but granted no model permission."""
    return User.objects.create_user("operator", password="x", is_staff=True)


@pytest.fixture
def tasks_worker() -> Iterator[Worker]:
    """A worker of this process on the Django Tasks tests' queue, closed at teardown."""
    made = Worker(queue=TEST_QUEUE, node=jobtable.node(TEST_QUEUE))
    yield made
    made.close()
