"""Production settings: refuse unsafe defaults, secure cookies and HSTS, no secret in output."""

from __future__ import annotations

import json
import signal

import pytest

from tests.reliability.support import PROD_ENV, PROD_SECRET_KEY, run_manage, settings_value
from tests.support.cluster import worker_env

INSECURE_DEV_KEY = "django-insecure-tablo-development-key-do-not-use-in-production"
# Requests through the test client in a fresh production-configured process.
PROBE = (
    "import json; from django.test import Client; c = Client();"
    "r = c.get('/healthz', secure=True, HTTP_HOST='tablo.example.com');"
    "plain = c.get('/healthz', HTTP_HOST='tablo.example.com');"
    "login = c.get('/accounts/login/', secure=True, HTTP_HOST='tablo.example.com');"
    "print(json.dumps({'hsts': r.headers.get('Strict-Transport-Security'),"
    " 'nosniff': r.headers.get('X-Content-Type-Options'),"
    " 'frame': login.headers.get('X-Frame-Options'),"
    " 'plain_status': plain.status_code, 'plain_location': plain.headers.get('Location'),"
    " 'csrf_cookie_secure': bool(login.cookies['csrftoken']['secure'])"
    "   if 'csrftoken' in login.cookies else None}))"
)


def probe(**env: str) -> dict:
    result = run_manage("shell", "--no-imports", "-c", PROBE, **{**PROD_ENV, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_production_environment() -> None:
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"])
@pytest.mark.parametrize("command", [("check",), ("migrate", "--check"), ("qcluster",)])
def test_missing_production_variable_is_named(missing: str, command: tuple[str, ...]) -> None:
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    result = run_manage(*command, timeout=60, **env)
    assert result.returncode != 0
    assert f"{missing} must be set when DJANGO_DEBUG is false" in result.stderr


@pytest.mark.parametrize("key", [INSECURE_DEV_KEY, "django-insecure-copied-from-a-tutorial-x"])
def test_worker_refuses_the_insecure_development_key(key: str) -> None:
    result = run_manage("qcluster", timeout=60, **{**PROD_ENV, "DJANGO_SECRET_KEY": key})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is the insecure development key" in result.stderr
    assert "running." not in result.stdout + result.stderr


def test_production_cookies_are_secure_and_http_only() -> None:
    got = settings_value(
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.DEBUG",
        **PROD_ENV,
    )
    assert got == "True True True False"
    assert probe()["csrf_cookie_secure"] is True


def test_development_cookies_work_over_plain_http() -> None:
    assert settings_value("s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE") == "False False"


def test_production_responses_carry_hsts_and_redirect_plain_http() -> None:
    got = probe()
    assert got["hsts"] == "max-age=31536000; includeSubDomains"
    assert got["nosniff"] == "nosniff"
    assert got["frame"] == "DENY"
    assert got["plain_status"] == 301
    assert got["plain_location"] == "https://tablo.example.com/healthz"


def test_hsts_is_configurable() -> None:
    assert probe(DJANGO_SECURE_HSTS_SECONDS="600")["hsts"] == "max-age=600; includeSubDomains"
    assert probe(DJANGO_SECURE_HSTS_SECONDS="600", DJANGO_SECURE_HSTS_PRELOAD="true")["hsts"] == (
        "max-age=600; includeSubDomains; preload"
    )
    assert probe(DJANGO_SECURE_HSTS_SECONDS="0")["hsts"] is None


def test_turning_hsts_off_is_reported_by_check_deploy() -> None:
    result = run_manage("check", "--deploy", DJANGO_SECURE_HSTS_SECONDS="0", **PROD_ENV)
    assert "security.W004" in result.stdout + result.stderr


def test_qinfo_config_masks_the_secret_key_and_broker_password() -> None:
    result = run_manage(
        "qinfo",
        "--config",
        **PROD_ENV,
        QUEUE_REDIS_URL="redis://tablo:hunter2-redis-pass@redis.internal:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert PROD_SECRET_KEY not in result.stdout
    assert "hunter2-redis-pass" not in result.stdout
    assert "SECRET_KEY: ********" in result.stdout
    assert "REDIS: redis://tablo:********@redis.internal:6379/0" in result.stdout
    # Still useful: the non-secret configuration is printed.
    assert "TIMEOUT: 300" in result.stdout
    assert "CLUSTER_NAME: tablo" in result.stdout


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_log_never_prints_secrets(worker_factory, s3_server) -> None:
    s3_secret = "s3-secret-never-in-logs-0123456789"
    env = worker_env(
        **PROD_ENV,
        S3_BUCKET="tablo-logs",
        S3_ENDPOINT_URL=s3_server.endpoint_url,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY=s3_secret,
        LOG_LEVEL="DEBUG",
    )
    worker = worker_factory(env=env)
    assert worker.stop(signal.SIGTERM) == 0
    log = worker.log()
    assert "running." in log
    assert PROD_SECRET_KEY not in log
    assert s3_secret not in log


@pytest.mark.parametrize(
    ("key", "figures"),
    [
        ("secret", "it has 6, 5 distinct"),
        ("a", "it has 1, 1 distinct"),
        ("a" * 60, "it has 60, 1 distinct"),
    ],
)
@pytest.mark.parametrize("command", [("check",), ("qcluster",)])
def test_a_weak_production_key_is_refused_at_start(
    key: str, figures: str, command: tuple[str, ...]
) -> None:
    result = run_manage(*command, timeout=60, **{**PROD_ENV, "DJANGO_SECRET_KEY": key})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is too weak: it needs at least 50 characters, 5 of them" in (
        result.stderr
    )
    assert figures in result.stderr
    assert "running." not in result.stdout + result.stderr


def test_a_weak_key_is_fine_in_development() -> None:
    result = run_manage("check", DJANGO_DEBUG="true", DJANGO_SECRET_KEY="a")
    assert result.returncode == 0, result.stderr
