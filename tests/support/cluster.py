"""Run a real ``manage.py qcluster`` against the test database.

Use with a test marked ``@pytest.mark.django_db(transaction=True)`` so that the
worker process sees committed rows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """A DATABASE_URL naming the database the tests are using right now."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=test_database_url(),
        PYTHONUNBUFFERED="1",
        LOG_FORMAT="json",
    )
    env.update(extra)
    return env


class Worker:
    """One ``qcluster`` process; its output goes to ``log_path``."""

    def __init__(
        self, log_path: Path, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
    ) -> None:
        self.log_path = log_path
        self.env = env if env is not None else worker_env()
        self.prefix = list(prefix)  # e.g. ["ip", "netns", "exec", NAME]: another host
        self.process: subprocess.Popen | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> Worker:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "manage.py", "qcluster"],
            cwd=BASE_DIR,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a service manager gives it
        )
        if wait_ready:
            self.wait_for_log("running.", timeout=timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, *, timeout: float = 30.0) -> None:
        self.wait_until(lambda: text in self.log(), timeout=timeout, what=f"log line {text!r}")

    def wait_until(self, predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}:\n{self.log()[-5000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 30.0) -> int:
        """Signal the main process only (never the group) and wait for it to exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                still = self._tree()
                self.kill()
                raise AssertionError(
                    f"the node did not stop within {timeout}s; processes left: {still}\n"
                    f"{self.log()[-6000:]}"
                ) from None
        self._log.close()
        return self.process.returncode

    def _tree(self) -> list[str]:
        """The node's processes: pid, name, state (what a stop that hangs waits on)."""
        try:
            root = psutil.Process(self.process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        found = []
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                found.append(f"{process.pid} {process.name()} {process.status()}")
        return found

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as ``kill -9`` of a service's cgroup
        does (its workers lead process groups of their own)."""
        if self.process is None:
            return
        try:
            tree = [psutil.Process(self.process.pid)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait()
