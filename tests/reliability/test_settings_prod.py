"""Production settings: refuse unsafe defaults, secure cookies and HSTS, no secret in output.

What a setting does is read in this process (tests.support.settings); what an
operator sees is checked on real ``manage.py`` start-ups: ``check --deploy``,
the worker and the release step refusing to start, ``qinfo --config``, the log.
"""

from __future__ import annotations

import signal
from io import StringIO

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client

from tests.reliability.support import PROD_ENV, PROD_SECRET_KEY, run_manage
from tests.support.cluster import worker_env
from tests.support.settings import load_settings, settings_of

INSECURE_DEV_KEY = "django-insecure-tablo-development-key-do-not-use-in-production"
WEAK_KEY = "DJANGO_SECRET_KEY is too weak: it needs at least 50 characters, 5 of them"


def probe(**env: str) -> dict:
    """Requests through the test client with the production settings ``env`` gives."""
    with settings_of(**{**PROD_ENV, **env}):
        client = Client()
        r = client.get("/healthz", secure=True, HTTP_HOST="tablo.example.com")
        plain = client.get("/healthz", HTTP_HOST="tablo.example.com")
        login = client.get("/accounts/login/", secure=True, HTTP_HOST="tablo.example.com")
    return {
        "hsts": r.headers.get("Strict-Transport-Security"),
        "nosniff": r.headers.get("X-Content-Type-Options"),
        "frame": login.headers.get("X-Frame-Options"),
        "plain_status": plain.status_code,
        "plain_location": plain.headers.get("Location"),
        "csrf_cookie_secure": bool(login.cookies["csrftoken"]["secure"])
        if "csrftoken" in login.cookies
        else None,
    }


def test_check_deploy_is_clean_with_production_environment() -> None:
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"])
def test_missing_production_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    with pytest.raises(
        ImproperlyConfigured, match=f"{missing} must be set when DJANGO_DEBUG is false"
    ):
        load_settings(**env)


@pytest.mark.parametrize("key", [INSECURE_DEV_KEY, "django-insecure-copied-from-a-tutorial-x"])
def test_the_insecure_development_key_is_refused(key: str) -> None:
    with pytest.raises(
        ImproperlyConfigured, match="DJANGO_SECRET_KEY is the insecure development key"
    ):
        load_settings(**{**PROD_ENV, "DJANGO_SECRET_KEY": key})


@pytest.mark.parametrize(
    ("key", "figures"),
    [
        ("secret", "it has 6, 5 distinct"),
        ("a", "it has 1, 1 distinct"),
        ("a" * 60, "it has 60, 1 distinct"),
    ],
)
def test_a_weak_production_key_is_refused(key: str, figures: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        load_settings(**{**PROD_ENV, "DJANGO_SECRET_KEY": key})
    assert WEAK_KEY in str(refused.value)
    assert figures in str(refused.value)


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in PROD_ENV.items() if k != name}


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (
            ("migrate", "--check"),
            without("DJANGO_SECRET_KEY"),
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false",
        ),
        (
            ("qcluster",),
            without("DJANGO_ALLOWED_HOSTS"),
            "DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is false",
        ),
        (
            ("qcluster",),
            {**PROD_ENV, "DJANGO_SECRET_KEY": INSECURE_DEV_KEY},
            "DJANGO_SECRET_KEY is the insecure development key",
        ),
        (
            ("qcluster",),
            {**PROD_ENV, "DJANGO_SECRET_KEY": "secret"},
            f"{WEAK_KEY} distinct (it has 6, 5 distinct)",
        ),
    ],
    ids=["release-without-key", "worker-without-hosts", "worker-with-dev-key", "worker-weak-key"],
)
def test_a_command_refuses_to_start_and_says_why(
    command: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = run_manage(*command, timeout=60, **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "running." not in result.stdout + result.stderr


@pytest.mark.django_db
def test_production_cookies_are_secure_and_http_only() -> None:
    prod = load_settings(**PROD_ENV)
    got = (prod.SESSION_COOKIE_SECURE, prod.CSRF_COOKIE_SECURE, prod.DEBUG)
    assert got == (True, True, False)
    with settings_of(**PROD_ENV):
        assert settings.SESSION_COOKIE_HTTPONLY is True
    assert probe()["csrf_cookie_secure"] is True


def test_development_cookies_work_over_plain_http() -> None:
    dev = load_settings()
    assert (dev.SESSION_COOKIE_SECURE, dev.CSRF_COOKIE_SECURE) == (False, False)


@pytest.mark.django_db
def test_production_responses_carry_hsts_and_redirect_plain_http() -> None:
    got = probe()
    assert got["hsts"] == "max-age=31536000; includeSubDomains"
    assert got["nosniff"] == "nosniff"
    assert got["frame"] == "DENY"
    assert got["plain_status"] == 301
    assert got["plain_location"] == "https://tablo.example.com/healthz"


@pytest.mark.django_db
def test_hsts_is_configurable() -> None:
    assert probe(DJANGO_SECURE_HSTS_SECONDS="600")["hsts"] == "max-age=600; includeSubDomains"
    assert probe(DJANGO_SECURE_HSTS_SECONDS="600", DJANGO_SECURE_HSTS_PRELOAD="true")["hsts"] == (
        "max-age=600; includeSubDomains; preload"
    )
    assert probe(DJANGO_SECURE_HSTS_SECONDS="0")["hsts"] is None


# Django 6 runs the model checks against the databases (SQLite's JSON support is a query).
@pytest.mark.django_db
def test_turning_hsts_off_is_reported_by_check_deploy() -> None:
    out, err = StringIO(), StringIO()
    with settings_of(**PROD_ENV, DJANGO_SECURE_HSTS_SECONDS="0"):
        call_command("check", "--deploy", stdout=out, stderr=err)
    assert "security.W004" in out.getvalue() + err.getvalue()


def test_qinfo_config_masks_the_secret_key() -> None:
    result = run_manage("qinfo", "--config", **PROD_ENV)
    assert result.returncode == 0, result.stderr
    assert PROD_SECRET_KEY not in result.stdout
    assert "SECRET_KEY: ********" in result.stdout
    # Still useful: the non-secret configuration is printed.
    assert "TIMEOUT: 300" in result.stdout
    assert "CLUSTER_NAME: tablo" in result.stdout


def test_qinfo_masks_the_password_of_a_url_in_the_configuration() -> None:
    from jobs.management.commands.qinfo import redact

    url = "redis://tablo:hunter2-redis-pass@redis.internal:6379/0"
    assert redact("REDIS", url) == "redis://tablo:********@redis.internal:6379/0"
    assert redact("REDIS", "redis://redis.internal:6379/0") == "redis://redis.internal:6379/0"


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


def test_a_weak_key_is_fine_in_development() -> None:
    assert load_settings(DJANGO_DEBUG="true", DJANGO_SECRET_KEY="a").SECRET_KEY == "a"
