"""Settings come from the environment; production refuses unsafe defaults.

Most tests read the settings as a process with that environment would
(tests.support.settings); the refusal of a missing key is also seen from outside,
as an operator starting ``manage.py`` sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import cache, caches
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import StorageHandler
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from config.env import INSECURE_DEV_SECRET_KEY
from tests.support.settings import load_settings, settings_of

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
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY is the insecure development"):
        load_settings(
            DJANGO_DEBUG="false",
            DJANGO_ALLOWED_HOSTS="tablo.example.com",
            DJANGO_SECRET_KEY="django-insecure-tablo-development-key-do-not-use-in-production",
        )


def test_production_refuses_to_start_without_allowed_hosts() -> None:
    with pytest.raises(
        ImproperlyConfigured, match="DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is false"
    ):
        load_settings(DJANGO_DEBUG="false", DJANGO_SECRET_KEY=PROD_KEY)


# Django 6 runs the model checks against the databases (SQLite's JSON support is a query).
@pytest.mark.django_db
def test_check_deploy_is_clean_in_production() -> None:
    out = StringIO()
    with settings_of(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=PROD_KEY,
        DJANGO_ALLOWED_HOSTS="tablo.example.com",
        EMAIL_URL="smtp+tls://tablo:pw@mail.example.com:587",
    ):
        call_command("check", "--deploy", "--fail-level", "WARNING", stdout=out)
    assert "System check identified no issues" in out.getvalue()


# Django 6 runs the model checks against the databases (SQLite's JSON support is a query).
@pytest.mark.django_db
def test_check_deploy_names_mail_left_on_the_console_in_production() -> None:
    with (
        settings_of(
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY=PROD_KEY,
            DJANGO_ALLOWED_HOSTS="tablo.example.com",
        ),
        pytest.raises(SystemCheckError, match=r"mail\.E001"),
    ):
        call_command("check", "--deploy", "--fail-level", "WARNING", stdout=StringIO())


# Django 6 runs the model checks against the databases (SQLite's JSON support is a query).
@pytest.mark.django_db
def test_development_runs_with_no_environment() -> None:
    dev = load_settings()
    assert dev.DEBUG is True
    assert dev.SECRET_KEY == INSECURE_DEV_SECRET_KEY
    out = StringIO()
    with settings_of():
        call_command("check", stdout=out)
    assert "System check identified no issues" in out.getvalue()


@pytest.mark.parametrize(
    ("env", "engine"),
    [
        ({}, "django.db.backends.sqlite3"),
        ({"DATABASE_URL": "postgres://u@db:5432/tablo"}, "django.db.backends.postgresql"),
    ],
)
def test_database_url_switches_engine(env: dict[str, str], engine: str) -> None:
    database = load_settings(**env).DATABASES["default"]
    assert database["ENGINE"] == engine
    if engine.endswith("sqlite3"):
        assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    else:
        assert database["CONN_MAX_AGE"] > 0


def test_s3_bucket_switches_default_storage() -> None:
    configured = load_settings(
        S3_BUCKET="tablo-files", S3_ENDPOINT_URL="http://minio:9000", S3_USE_PATH_STYLE="true"
    )
    default = StorageHandler(configured.STORAGES)["default"]
    assert type(default).__name__ == "S3Storage"
    assert (default.bucket_name, default.endpoint_url, default.addressing_style) == (
        "tablo-files",
        "http://minio:9000",
        "path",
    )


def test_q_cluster_timeout_and_workers_come_from_the_environment() -> None:
    q = load_settings(Q_TIMEOUT="100", Q_WORKERS="5").Q_CLUSTER
    assert (q["timeout"], q["workers"]) == (100, 5)
    # django-q2 warns at import unless its (unused) retry is above the timeout.
    assert q["retry"] > q["timeout"]


def test_the_queue_is_the_job_table_and_queue_redis_url_is_retired() -> None:
    default = load_settings()
    assert default.Q_CLUSTER["broker_class"] == "jobs.engine.broker.DatabaseBroker"
    assert default.Q_CLUSTER["orm"] == "default"
    assert default.JOBS_RETIRED_ENV == []
    retired = load_settings(QUEUE_REDIS_URL="redis://queue:6379/2")
    assert retired.Q_CLUSTER == default.Q_CLUSTER
    assert retired.JOBS_RETIRED_ENV == ["QUEUE_REDIS_URL"]


def test_cache_redis_url_switches_the_shared_cache_to_redis() -> None:
    assert load_settings().CACHES["default"]["BACKEND"].endswith("DatabaseCache")
    cache = load_settings(CACHE_REDIS_URL="redis://cache:6379/1").CACHES["default"]
    assert cache == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://cache:6379/1",
    }


def test_the_forwarded_scheme_is_trusted_only_behind_a_tls_proxy() -> None:
    assert not hasattr(load_settings(), "SECURE_PROXY_SSL_HEADER")
    behind = load_settings(DJANGO_BEHIND_TLS_PROXY="true")
    assert behind.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")


def test_production_logs_json_lines_and_serves_compressed_static_files() -> None:
    dev = load_settings()
    prod = load_settings(
        DJANGO_DEBUG="false", DJANGO_SECRET_KEY=PROD_KEY, DJANGO_ALLOWED_HOSTS="tablo.example.com"
    )
    assert (dev.LOG_FORMAT, prod.LOG_FORMAT) == ("console", "json")
    assert prod.STORAGES["staticfiles"]["BACKEND"] == (
        "whitenoise.storage.CompressedStaticFilesStorage"
    )
    assert dev.STORAGES["staticfiles"]["BACKEND"].startswith("django.contrib.staticfiles")


@pytest.mark.django_db
def test_the_database_cache_keeps_more_than_django_s_default_300_entries() -> None:
    # cached=True results and async_iter members live here until read: none may be culled.

    backend = type(caches["default"]).__name__
    if backend != "DatabaseCache":
        assert backend == "RedisCache"  # CACHE_REDIS_URL set: Redis never culls
        return
    cache.set_many({f"kept-{i}": i for i in range(400)}, None)
    assert cache.get("kept-0") == 0
    assert len(cache.get_many([f"kept-{i}" for i in range(400)])) == 400


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp_proto_http", "console"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            ["otlp_proto_http"],
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_tracing_is_off_unless_otel_traces_exporter_names_an_exporter(
    env: dict[str, str], exporters: list[str]
) -> None:
    loaded = load_settings(**env)
    assert exporters == loaded.TRACE_EXPORTERS
    assert bool(exporters) is loaded.TRACING_ENABLED


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not available"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "OTLP protocol 'grpc' is not installed",
        ),
    ],
)
def test_a_trace_exporter_that_is_not_installed_is_refused(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        load_settings(**env)
