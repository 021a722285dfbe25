"""Waiting for a queue's NOTIFY on PostgreSQL: one autocommit connection per worker process.

Whoever makes a task of the queue ready (an enqueue, a retry, a hand-back) sends
``pg_notify`` on its channel (``jobs.engine.channels``), delivered at commit.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg
import structlog
from django.db import connections
from psycopg import sql

from jobs.engine.channels import channel_name

logger = structlog.stdlib.get_logger("jobs.engine.listener")

# After a failed connection, ``drain`` and ``fileno`` try again only this much later.
REOPEN_SECONDS = 5.0


class Listener:
    def __init__(self, alias: str, queue: str, *, channel: str | None = None) -> None:
        self.alias = alias
        self.channel = channel or channel_name(queue)
        self.conn: Any = None
        self.reopen_at = 0.0  # a non-blocking user (drain) waits this long to reconnect

    def _connect(self) -> Any:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        params = dict(connections[self.alias].get_connection_params())
        for key in ("cursor_factory", "context", "prepare_threshold", "pool"):
            params.pop(key, None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self.conn = conn
        return conn

    def wait(self, timeout: float) -> set[str] | None:
        """Block until a NOTIFY arrives, at most ``timeout`` seconds: the payloads of
        what arrived (at least ``{""}``), or None when nothing did."""
        try:
            conn = self._connect()
            payloads = {n.payload for n in conn.notifies(timeout=max(timeout, 0.0), stop_after=1)}
            if payloads:
                # Drain what arrived together so the next idle wait really waits.
                payloads.update(n.payload for n in conn.notifies(timeout=0.0))
            return payloads or None
        except Exception:
            # A broken listener only costs latency: poll until it is reopened.
            logger.exception("LISTEN connection failed; reopening")
            self.close()
            time.sleep(min(timeout, 1.0))
            return None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self.conn.close()
        self.conn = None

    def fileno(self) -> int:
        """The connection's socket, for a ``select`` over several waits (opens it; after
        a failure, not before ``REOPEN_SECONDS``)."""
        if self.conn is None and time.monotonic() < self.reopen_at:
            raise ConnectionError("the LISTEN connection is reopened later")
        try:
            return int(self._connect().fileno())
        except Exception:
            self.close()
            self.reopen_at = time.monotonic() + REOPEN_SECONDS
            raise

    def drain(self) -> bool:
        """Whether a NOTIFY arrived since the last call (never blocks). A broken link is
        logged once per reopening attempt; the caller's own polling covers the gap."""
        if self.conn is None and time.monotonic() < self.reopen_at:
            return False
        try:
            return any(True for _ in self._connect().notifies(timeout=0.0))
        except Exception:
            logger.exception("LISTEN connection failed; reopening", retry_in=REOPEN_SECONDS)
            self.close()
            self.reopen_at = time.monotonic() + REOPEN_SECONDS
            return False
