"""Transactional jobs the completion tests run in a real cluster (imported by path).

Each writes one ``tx_effect`` row per key (a primary key: a second application
of the same task would fail) and adds one to the single ``tx_counter`` row.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

from jobs.engine.registry import job

TABLES_SQL = (
    "CREATE TABLE IF NOT EXISTS tx_effect (key VARCHAR(64) PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS tx_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
)


class Ledger:
    """The ``tx_effect`` keys and the ``tx_counter`` value of the test database."""

    def keys(self) -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT key FROM tx_effect")
            return {row[0] for row in cursor.fetchall()}

    def counter(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT n FROM tx_counter WHERE id = 1")
            return cursor.fetchone()[0]


@contextlib.contextmanager
def ledger_tables() -> Iterator[Ledger]:
    """Empty ``tx_effect`` and ``tx_counter`` tables for one test, dropped after it."""
    with connection.cursor() as cursor:
        for sql in TABLES_SQL:
            cursor.execute(sql)
        cursor.execute("DELETE FROM tx_effect")
        cursor.execute("DELETE FROM tx_counter")
        cursor.execute("INSERT INTO tx_counter (id, n) VALUES (1, 0)")
    yield Ledger()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE tx_effect")
        cursor.execute("DROP TABLE tx_counter")


def _apply(key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO tx_effect (key) VALUES (%s)", [key])
        cursor.execute("UPDATE tx_counter SET n = n + 1 WHERE id = 1")


@job("tests.tx_record", transactional=True, max_attempts=10)
def tx_record(key: str, sleep: float = 0.0) -> str:
    if sleep:
        time.sleep(sleep)
    _apply(key)
    return key


@job("tests.tx_fails_once", transactional=True, max_attempts=3)
def tx_fails_once(key: str, marker: str) -> str:
    """Writes, then fails on its first run: the writes of that run are rolled back."""
    _apply(key)
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("first attempt fails after writing")
    return key


@job("tests.tx_returns", transactional=True, max_attempts=2)
def tx_returns(key: str, value: object) -> object:
    """Writes, then returns ``value`` (one the engine may refuse to keep)."""
    _apply(key)
    return value


@job("tests.tx_times_out", transactional=True, timeout=2, max_attempts=1)
def tx_times_out(key: str) -> None:
    """Writes, then runs past its timeout: the writes are rolled back."""
    _apply(key)
    time.sleep(30)  # the workload itself: it outlasts the 2 s timeout, which ends the run
