"""Helpers shared by the reliability tests: run manage.py in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
PROD_SECRET_KEY = "rel-7Vq2kR9zLm4XwTn8bYc3HdJf6Gs1AeUo5iQ0rWvKtZyEhNgPx"
PROD_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": PROD_SECRET_KEY,
    "DJANGO_ALLOWED_HOSTS": "tablo.example.com",
    "EMAIL_URL": "smtp+tls://tablo:pw@mail.example.com:587",
}


def clean_env(**env: str) -> dict[str, str]:
    """The process environment without any project variable, plus ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "S3_", "DATABASE_URL", "LOG_", "Q_", "QUEUE_"))
    }
    return {**base, **env}


def run_manage(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def settings_value(expression: str, **env: str) -> str:
    """Evaluate ``expression`` (``s`` is django.conf.settings) in a fresh process."""
    code = f"from django.conf import settings as s; print({expression})"
    result = run_manage("shell", "--no-imports", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


ENQUEUE_SCRIPT = (
    "import sys, json; from django_q.tasks import async_task;"
    "a = json.loads(sys.argv[-1]);"
    "[async_task('tests.reliability.jobs.record', k, a['sleep']) for k in a['keys']]"
)


def enqueue_records_in(database_url: str, keys: list[str], *, sleep: float = 0.0) -> None:
    """Enqueue ``record`` tasks from another process, on the database at ``database_url``."""
    import json

    result = subprocess.run(
        [sys.executable, "-c", _BOOT + ENQUEUE_SCRIPT, json.dumps({"keys": keys, "sleep": sleep})],
        cwd=BASE_DIR,
        env=clean_env(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="config.settings"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


_BOOT = "import django; django.setup();"
