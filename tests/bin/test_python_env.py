"""bin/run and bin/test pick a Python Django 6.1 runs on, or say what to install.

bin/python-env.sh is run by bash with a PATH and a home of the test's making: fake
interpreters answer the version check as an old or a new Python would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "exit 1", "exit 0"  # how a fake answers `python -c 'sys.exit(version < 3.12)'`


def fake_python(path: Path, answer: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{answer}\n")
    path.chmod(0o755)
    return path


def bash(tmp_path: Path, script: str, *, cwd: Path | None = None, **env: str):
    """Runs ``script`` after sourcing bin/python-env.sh, with only fakes and tools on PATH."""
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for tool in ("cat", "rm", "sort"):
        if not (tools / tool).exists():
            (tools / tool).symlink_to(shutil.which(tool))
    return subprocess.run(
        ["/bin/bash", "-c", f"set -euo pipefail; source {REPO}/bin/python-env.sh; {script}"],
        cwd=cwd or tmp_path,
        env={"PATH": f"{tmp_path / 'bin'}:{tools}", "HOME": str(tmp_path / "home"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_3_13_on_path_wins_over_3_12(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin/python3", OLD)
    fake_python(tmp_path / "bin/python3.12", NEW)
    newest = fake_python(tmp_path / "bin/python3.13", NEW)
    assert bash(tmp_path, "find_python").stdout.strip() == str(newest)


def test_a_pyenv_python_is_found_when_path_has_only_an_old_one(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin/python3", OLD)
    versions = tmp_path / "home/.pyenv/versions"
    fake_python(versions / "3.12.1/bin/python", NEW)
    fake_python(versions / "3.13.9/bin/python", NEW)
    newest = fake_python(versions / "3.13.10/bin/python", NEW)
    assert bash(tmp_path, "find_python").stdout.strip() == str(newest)


def test_an_old_pyenv_python_is_passed_over(tmp_path: Path) -> None:
    fake_python(tmp_path / "home/.pyenv/versions/3.12.1/bin/python", OLD)  # a broken build
    chosen = fake_python(tmp_path / "home/.pyenv/versions/3.12.0/bin/python", NEW)
    assert bash(tmp_path, "find_python").stdout.strip() == str(chosen)


def test_python_names_the_interpreter_to_use(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin/python3.13", NEW)
    chosen = fake_python(tmp_path / "elsewhere/python", NEW)
    assert bash(tmp_path, "find_python", PYTHON=str(chosen)).stdout.strip() == str(chosen)
    too_old = fake_python(tmp_path / "elsewhere/python3.11", OLD)
    result = bash(tmp_path, "ensure_venv", PYTHON=str(too_old))
    assert result.returncode == 1
    assert f"PYTHON={too_old} is not Python 3.12 or newer" in result.stderr


def test_without_a_suitable_python_it_stops_and_says_what_to_install(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin/python3", OLD)
    fake_python(tmp_path / "home/.pyenv/versions/3.11.7/bin/python", OLD)
    result = bash(tmp_path, "ensure_venv; echo unreachable")
    assert result.returncode == 1
    assert "Tablo needs Python 3.13 (3.12 at least" in result.stderr
    assert "pyenv install 3.13" in result.stderr
    assert "unreachable" not in result.stdout
    assert not (tmp_path / ".venv").exists()


@pytest.mark.slow
def test_a_virtualenv_of_an_old_python_is_replaced(tmp_path: Path) -> None:
    fake_python(tmp_path / ".venv/bin/python", OLD)
    (tmp_path / ".venv/.installed-requirements").write_text("made on 3.11\n")
    # This interpreter (the suite runs on 3.12 or newer) is the one found on PATH.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/python3.13").symlink_to(sys.executable)
    result = bash(tmp_path, 'ensure_venv; echo "version=$VENV_PYTHON_VERSION"')
    assert result.returncode == 0, result.stderr
    assert "==> replacing .venv" in result.stdout
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"version={version}" in result.stdout
    assert not (tmp_path / ".venv/.installed-requirements").exists()
    made = subprocess.run(
        [tmp_path / ".venv/bin/python", "-c", "import sys; print(sys.prefix)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert made.stdout.strip() == str(tmp_path / ".venv")
    # Suitable now: kept as it is on the next run.
    again = bash(tmp_path, "ensure_venv")
    assert again.returncode == 0
    assert again.stdout == ""
