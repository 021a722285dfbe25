"""The one place that reads the process environment.

Every setting that can change between development, CI and production is read
here, typed, with a development-friendly default. ``config.settings`` imports
the resulting values; nothing else in the project calls ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# Used only while DJANGO_DEBUG is true; production refuses it (see below).
INSECURE_DEV_SECRET_KEY = "django-insecure-tablo-development-key-do-not-use-in-production"  # noqa: S105

_KEY_RECIPE = "python -c 'import secrets; print(secrets.token_urlsafe(50))'"

env = environ.Env()
# An optional `.env` file (git-ignored) for local overrides; real variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def required_in_production(name: str, *, debug: bool, default: str) -> str:
    """Return the variable, or ``default`` in development; refuse to guess in production."""
    value = env.str(name, default="")
    if value:
        return value
    if debug:
        return default
    raise ImproperlyConfigured(
        f"{name} must be set when DJANGO_DEBUG is false (production). "
        f"Set {name} in the environment, or set DJANGO_DEBUG=true for local development."
    )


def secret_key(*, debug: bool) -> str:
    key = required_in_production("DJANGO_SECRET_KEY", debug=debug, default=INSECURE_DEV_SECRET_KEY)
    if debug:
        return key
    if key == INSECURE_DEV_SECRET_KEY or key.startswith(SECRET_KEY_INSECURE_PREFIX):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is the insecure development key; set a long random "
            f"value when DJANGO_DEBUG is false (for example: {_KEY_RECIPE})."
        )
    # Django's deploy check (security.W009) only warns, and only under --deploy: a
    # weak key signing sessions and task payloads must stop the process instead.
    if len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is too weak: it needs at least {SECRET_KEY_MIN_LENGTH} "
            f"characters, {SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them distinct (it has "
            f"{len(key)}, {len(set(key))} distinct). Generate one with: {_KEY_RECIPE}."
        )
    return key
