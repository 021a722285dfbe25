"""bin/test: what it prints is safe to keep in CI logs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgres://ci:s3cret-pw@db.example:5432/tablo",
            "postgres://ci:****@db.example:5432/tablo",
        ),
        ("postgres://ci:p@ss@db.example/tablo", "postgres://ci:****@db.example/tablo"),
        ("postgres://postgres@127.0.0.1:5432/tablo", "postgres://postgres@127.0.0.1:5432/tablo"),
    ],
)
def test_bin_test_never_prints_the_database_password(url: str, shown: str) -> None:
    # `--version` makes pytest stop at once: only bin/test's own output is checked.
    result = subprocess.run(
        [str(BASE_DIR / "bin/test"), "--version"],
        cwd=BASE_DIR,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"==> pytest on {shown}\n" in result.stdout
    for secret in ("s3cret-pw", "p@ss"):
        assert secret not in result.stdout + result.stderr
