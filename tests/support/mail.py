"""Mailers for tests: Django's in-memory outbox, or SMTP to a loopback port where
nothing listens (every send is refused)."""

from __future__ import annotations

from tests.support.s3 import free_port

LOCMEM = {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
SMTP_DOWN = {
    "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "timeout": 5},
}
