from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from tests.reliability.jobs import EFFECT_TABLE_SQL


class Effects:
    """The ``rel_effect`` table of the test database: key -> times the effect was applied."""

    def all(self) -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT key, runs FROM rel_effect")
            return dict(cursor.fetchall())


@pytest.fixture
def effects(transactional_db) -> Iterator[Effects]:
    with connection.cursor() as cursor:
        cursor.execute(EFFECT_TABLE_SQL)
    yield Effects()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE rel_effect")
