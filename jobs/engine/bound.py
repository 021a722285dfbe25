"""A cursor that binds parameters on the server, for the statements of every batch.

Django's psycopg cursors bind on the client: each execution rebuilds and quotes the
query text in Python, a cost the claim, start and finish statements would pay
thousands of times a second. These go through a plain psycopg cursor on the same
connection and transaction instead: parameters travel apart from the text. Errors
come out as Django's (``OperationalError``...), as from any cursor; statements are
not prepared unless ``OPTIONS["prepare_threshold"]`` asks for it (Django's default
keeps connection poolers working).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from django.db import connections


@contextlib.contextmanager
def cursor(alias: str) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
    db = connections[alias]
    db.validate_thread_sharing()
    db.close_if_health_check_failed()
    with db.wrap_database_errors:
        db.ensure_connection()
        with psycopg.Cursor(db.connection) as raw:
            yield raw
