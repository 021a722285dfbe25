"""The one place that reads the process environment.

Every setting that can change between development, CI and production is read
here, typed, with a development-friendly default. ``config.settings`` imports
the resulting values; nothing else in the project calls ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# Used only while DJANGO_DEBUG is true; production refuses it (see below).
INSECURE_DEV_SECRET_KEY = "django-insecure-tablo-development-key-do-not-use-in-production"  # noqa: S105

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
    if not debug and (key == INSECURE_DEV_SECRET_KEY or key.startswith("django-insecure")):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is the insecure development key; set a long random "
            "value when DJANGO_DEBUG is false (for example: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    return key
