"""``manage.py startjob``: errors write nothing; a generated job and its test pass as generated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

BASE_DIR = Path(settings.BASE_DIR)


def project_files() -> set[Path]:
    return {p for p in BASE_DIR.rglob("*.py") if ".venv" not in p.parts and ".git" not in p.parts}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["files", "Send-Digest"], "not a valid job name"),
        (["files", "class"], "not a valid job name"),
        (["files", "SendDigest"], "not a valid job name"),
        (["nope", "send_digest"], "unknown app 'nope'; the project's apps are: "),
        (["django_q", "send_digest"], "is not part of this project"),
        (["files", "purge_tablo"], "job 'files.purge_tablo' already exists"),
    ],
)
def test_bad_requests_get_a_clear_error_and_write_nothing(args: list[str], message: str) -> None:
    before = project_files()
    with pytest.raises(CommandError, match=message):
        call_command("startjob", *args, stdout=StringIO())
    assert project_files() == before


def _copy_project(target: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", "var", "__pycache__", "node_modules", "staticfiles")
    shutil.copytree(BASE_DIR, target, ignore=ignore, symlinks=True)
    return target


@pytest.mark.slow
def test_generated_job_and_test_pass_as_generated(tmp_path: Path) -> None:
    project = _copy_project(tmp_path / "project")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "S3_", "QUEUE_REDIS_URL"))
    }
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True
        )

    created = run("manage.py", "startjob", "tablos", "send_digest")
    assert created.returncode == 0, created.stderr
    assert "created tablos/jobs/send_digest.py" in created.stdout
    assert "created tests/tablos/test_job_send_digest.py" in created.stdout
    assert (project / "tablos/jobs/__init__.py").exists()

    again = run("manage.py", "startjob", "tablos", "send_digest")
    assert again.returncode != 0
    assert "job 'tablos.send_digest' already exists" in again.stderr

    tested = run(
        "-m", "pytest", "tests/tablos/test_job_send_digest.py", "-p", "no:cacheprovider", "-q"
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout
    linted = subprocess.run(
        [str(project / ".venv/bin/ruff"), "check", "tablos/jobs", "tests/tablos"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert linted.returncode == 0, linted.stdout
    formatted = subprocess.run(
        [str(project / ".venv/bin/ruff"), "format", "--check", "tablos/jobs", "tests/tablos"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout
