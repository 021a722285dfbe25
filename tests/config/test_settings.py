"""Settings come from the environment; production refuses unsafe defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
PROD_KEY = "p7Vq2-kR9zLm4XwTn8bYc3HdJf6Gs1AeUo5iQ0rWvK_tZyEhNg"


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "S3_", "DATABASE_URL", "LOG_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_secret_key() -> None:
    result = run_manage("check", DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="tablo.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false" in result.stderr


def test_production_refuses_the_insecure_development_key() -> None:
    result = run_manage(
        "check",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="tablo.example.com",
        DJANGO_SECRET_KEY="django-insecure-tablo-development-key-do-not-use-in-production",
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is the insecure development key" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts() -> None:
    result = run_manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=PROD_KEY)
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is false" in result.stderr


def test_check_deploy_is_clean_in_production() -> None:
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=PROD_KEY,
        DJANGO_ALLOWED_HOSTS="tablo.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_development_runs_with_no_environment() -> None:
    result = run_manage("check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "engine"),
    [
        ({}, "django.db.backends.sqlite3"),
        ({"DATABASE_URL": "postgres://u@db:5432/tablo"}, "django.db.backends.postgresql"),
    ],
)
def test_database_url_switches_engine(env: dict[str, str], engine: str) -> None:
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['ENGINE'], d.get('CONN_MAX_AGE'), d.get('OPTIONS', {}).get('transaction_mode'))"
    )
    result = run_manage("shell", "--no-imports", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    got_engine, max_age, mode = result.stdout.split()
    assert got_engine == engine
    if engine.endswith("sqlite3"):
        assert mode == "IMMEDIATE"
    else:
        assert int(max_age) > 0


def test_s3_bucket_switches_default_storage() -> None:
    result = run_manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.core.files.storage import storages;"
        "d = storages['default']; print(type(d).__name__, d.bucket_name, d.endpoint_url,"
        " d.addressing_style)",
        S3_BUCKET="tablo-files",
        S3_ENDPOINT_URL="http://minio:9000",
        S3_USE_PATH_STYLE="true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["S3Storage", "tablo-files", "http://minio:9000", "path"]


def test_q_cluster_retry_exceeds_timeout() -> None:
    result = run_manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; q = s.Q_CLUSTER;"
        "print(q['timeout'], q['retry'], q['workers'])",
        Q_TIMEOUT="100",
        Q_RETRY="50",
        Q_WORKERS="5",
    )
    assert result.returncode == 0, result.stderr
    timeout, retry, workers = map(int, result.stdout.split())
    assert (timeout, workers) == (100, 5)
    assert retry > timeout
