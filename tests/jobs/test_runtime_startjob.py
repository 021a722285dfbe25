"""``manage.py startjob``: errors write nothing; a generated job and its test pass as generated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

BASE_DIR = Path(settings.BASE_DIR)


def project_files() -> set[Path]:
    """Every .py file of the project (never looking into the virtualenv or .git)."""
    found = set()
    for folder, subfolders, files in os.walk(BASE_DIR):
        subfolders[:] = [d for d in subfolders if d not in (".venv", ".git")]
        found.update(Path(folder, name) for name in files if name.endswith(".py"))
    return found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["files", "Send-Digest"], "not a valid job name"),
        (["files", "class"], "not a valid job name"),
        (["files", "SendDigest"], "not a valid job name"),
        (["files", "dig\u00e9st"], "not a valid job name: use a lowercase ASCII"),
        (["files", "d" * 61], "of at most 60 characters"),
        (["files", "a\x00b"], "not a valid job name"),
        (["files", "\u0661"], "not a valid job name"),
        (["files", "digest\n"], "not a valid job name"),
        (["nope\x00", "send_digest"], "unknown app"),
        (["nope", "send_digest"], "unknown app 'nope'; the project's apps are: "),
        (["django_q", "send_digest"], "is not part of this project"),
        (["files", "purge_tablo"], "job 'files.purge_tablo' already exists"),
        (["files", "x", "--django-task", "--transactional"], "cannot be transactional"),
        (["files", "x", "--django-task", "--concurrency", "2"], "not a Django task"),
        (["files", "digest", "--concurrency", "0"], "--concurrency must be a whole number"),
        (["files", "digest", "--per-key"], "--per-key needs --concurrency N"),
        (["files", "digest", "--rate", "100"], "--rate '100': give N/SECONDS"),
        (["files", "digest", "--rate", "0/10"], "give N/SECONDS"),
        (["files", "digest", "--rate", "5/0"], "give N/SECONDS"),
        (["files", "digest", "--expires", "0"], "--expires 0: give the seconds"),
        (["files", "digest", "--expires", "nan"], "--expires nan: give the seconds"),
        (["files", "digest", "--expires", "4e8"], "at most ten years"),
        (["files", "x", "--django-task", "--expires", "60"], "not a Django task"),
    ],
)
def test_bad_requests_get_a_clear_error_and_write_nothing(args: list[str], message: str) -> None:
    before = project_files()
    with pytest.raises(CommandError, match=message):
        call_command("startjob", *args, stdout=StringIO())
    assert project_files() == before


def _copy_project(target: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "var", "__pycache__", "node_modules", "staticfiles"
    )
    shutil.copytree(BASE_DIR, target, ignore=ignore, symlinks=True)
    # The virtualenv under test, as it is (the copy's own code, this environment's tools).
    (target / ".venv").symlink_to(BASE_DIR / ".venv")
    return target


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--transactional"],
        ["--django-task"],
        ["--concurrency", "2", "--per-key", "--rate", "100/10", "--expires", "3600"],
    ],
    ids=["plain", "transactional", "django_task", "limited"],
)
def test_generated_job_and_test_pass_as_generated(tmp_path: Path, flags: list[str]) -> None:
    project = _copy_project(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "S3_"))}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True
        )

    # A name no working tree has: the copy may hold jobs someone generated there already.
    name = f"digest_{uuid.uuid4().hex[:8]}"
    created = run("manage.py", "startjob", "tablos", name, *flags)
    assert created.returncode == 0, created.stderr
    module = (project / f"tablos/jobs/{name}.py").read_text()
    assert ("transactional=True" in module) == ("--transactional" in flags)
    assert ("from django.tasks import task" in module) == (flags == ["--django-task"])
    limited = "--concurrency" in flags
    assert ("concurrency_key=lambda item_id: item_id" in module) == limited
    assert ("rate=(100, 10.0)" in module) == limited
    assert ("expires=3600," in module) == limited
    assert f"created tablos/jobs/{name}.py" in created.stdout
    assert f"created tests/tablos/test_job_{name}.py" in created.stdout
    assert (project / "tablos/jobs/__init__.py").exists()

    again = run("manage.py", "startjob", "tablos", name, *flags)
    assert again.returncode != 0
    # A Django task is known by its module path, registered at start like a job.
    known = f"tablos.jobs.{name}.{name}" if flags == ["--django-task"] else f"tablos.{name}"
    assert f"job '{known}' already exists" in again.stderr

    tested = run("-m", "pytest", f"tests/tablos/test_job_{name}.py", "-p", "no:cacheprovider", "-q")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert f"{3 if flags == ['--django-task'] else 2} passed" in tested.stdout
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
