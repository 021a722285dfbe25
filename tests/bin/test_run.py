"""bin/run supervises web and worker: if one dies, nothing of either keeps running."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.s3 import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def checkout(tmp_path: Path) -> Path:
    """The repository's tracked files in a temporary directory, with this environment."""
    root = tmp_path / "repo"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    # The virtualenv under test (bin/run would otherwise build one from the network).
    (root / ".venv").symlink_to(REPO / ".venv")
    return root


def processes_in(root: Path) -> set[int]:
    """Live processes whose working directory is ``root``."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == root and (proc / "stat").read_text().rsplit(
                ")", 1
            )[1].split()[0] not in ("Z", "X"):
                found.add(int(proc.name))
        except OSError:
            continue
    return found


def wait_until(predicate, *, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def test_a_killed_worker_stops_everything_and_fails(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "S3_", "Q_"))}
    env.update(PORT=str(free_port()), PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        run = subprocess.Popen(
            ["bin/run"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "Q Cluster" in log.read_text() and "running." in log.read_text(),
                   timeout=240, what="web and worker up", log=log)  # fmt: skip
        worker = int(re.search(r"worker pid (\d+)", log.read_text()).group(1))
        tree = processes_in(root)
        assert worker in tree
        assert len(tree) >= 4  # web, qcluster supervisor, its worker processes

        os.kill(worker, signal.SIGKILL)

        assert run.wait(timeout=60) != 0
        wait_until(lambda: not processes_in(root), timeout=30, what="no process left", log=log)
        assert f"the worker process ({worker}) exited" in log.read_text()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in processes_in(root):
            os.kill(pid, signal.SIGKILL)
