"""Tasks the fault tests enqueue; each records its effect idempotently by key.

``rel_effect`` (created by the tests, see ``EFFECT_TABLE_SQL``) holds one row per
key and counts how many times the effect was applied: at-least-once delivery
may apply it more than once, never zero times.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.db import connection

EFFECT_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS rel_effect (key VARCHAR(64) PRIMARY KEY, runs INTEGER NOT NULL)"
)
UPSERT_SQL = (
    "INSERT INTO rel_effect (key, runs) VALUES (%s, 1) "
    "ON CONFLICT (key) DO UPDATE SET runs = rel_effect.runs + 1"
)


def record(key: str, sleep: float = 0.0) -> str:
    if sleep:
        time.sleep(sleep)
    with connection.cursor() as cursor:
        cursor.execute(UPSERT_SQL, [key])
    return key


def kill_own_process() -> None:
    """A poison task: the worker process running it dies without reporting anything."""
    os._exit(13)


def fail_once(marker: str) -> str:
    """Fails on its first run (creating ``marker``), succeeds on every later run."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("first attempt fails on purpose")
    return "ok"
