"""A real web server (gunicorn) on a free port, for tests that need HTTP from outside."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.reliability.support import BASE_DIR
from tests.support.s3 import free_port


class WebServer:
    def __init__(self, log_path: Path, env: dict[str, str], *, workers: int = 2, threads: int = 8):
        self.log_path = log_path
        self.env = env
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> WebServer:
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "gunicorn", "config.wsgi"]
        command += ["--bind", f"127.0.0.1:{self.port}", "--timeout", "120"]
        command += ["--workers", str(self.workers), "--threads", str(self.threads)]
        self.process = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"web server exited:\n{self.log()}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2)  # noqa: S310
                return self
            except OSError as exc:
                if getattr(exc, "code", None):  # an HTTP error: it answers
                    return self
                time.sleep(0.2)
        raise RuntimeError(f"web server did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if hasattr(self, "_log"):
            self._log.close()
