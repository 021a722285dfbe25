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


# OTEL_TRACES_EXPORTER names -> the span exporters' entry point names
# (group ``opentelemetry_traces_exporter``) of the packages requirements.txt installs.
_TRACE_EXPORTERS = {"otlp": "otlp_proto_http", "console": "console"}


def trace_exporters() -> list[str]:
    """The span exporters the standard ``OTEL_*`` variables ask for; [] when tracing is off.

    Off unless ``OTEL_TRACES_EXPORTER`` names one (``otlp``, ``console``), and always off
    with ``OTEL_SDK_DISABLED=true``. Everything else (endpoint, headers, service name,
    sampler, batching) is read by the OpenTelemetry SDK itself from its own variables.
    """
    if env.bool("OTEL_SDK_DISABLED", default=False):
        return []
    names = [n.strip().lower() for n in env.str("OTEL_TRACES_EXPORTER", default="").split(",")]
    names = [n for n in names if n and n != "none"]
    protocol = env.str(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        default=env.str("OTEL_EXPORTER_OTLP_PROTOCOL", default="http/protobuf"),
    )
    for name in names:
        if name not in _TRACE_EXPORTERS:
            raise ImproperlyConfigured(
                f"OTEL_TRACES_EXPORTER={name!r} is not available: use otlp (OTLP over HTTP), "
                "console, or none."
            )
        if name == "otlp" and protocol != "http/protobuf":
            raise ImproperlyConfigured(
                f"OTLP protocol {protocol!r} is not installed: only http/protobuf is "
                "(unset OTEL_EXPORTER_OTLP_PROTOCOL, or set it to http/protobuf)."
            )
    return [_TRACE_EXPORTERS[name] for name in dict.fromkeys(names)]
