"""``qinfo`` without leaking secrets.

django-q2's own ``qinfo --config`` prints every ``Conf`` attribute, ``SECRET_KEY``
(the key that signs queue payloads and sessions) and broker URLs with their
passwords included. Operators paste that output into tickets; this override
prints the same configuration with secrets masked. The cluster overview
(``qinfo`` / ``qinfo --ids``) is still django-q2's (with ``blessed``, pinned).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandParser
from django_q import VERSION
from django_q.conf import Conf
from django_q.monitor_terminal import get_ids, info

MASK = "********"
_SECRET_NAME = re.compile(r"secret|password|passwd|token|credential|private|_key$|^key$", re.I)
# Conf's state labels and internal mappings, not configuration.
_HIDDEN = {"conf", "IDLE", "STOPPING", "STARTING", "WORKING", "SIGNAL_NAMES", "STOPPED"}


def _mask_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.password:
        return value
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def redact(name: str, value: Any) -> Any:
    """``value`` with anything secret-looking under ``name`` replaced by a mask."""
    if _SECRET_NAME.search(name):
        return MASK if value else value
    if isinstance(value, dict):
        return {k: redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(name, v) for v in value)
    if isinstance(value, str) and "://" in value:
        return _mask_url(value)
    return value


class Command(BaseCommand):
    help = "General information over all clusters (configuration printed with secrets masked)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", action="store_true", help="Print current configuration.")
        parser.add_argument("--ids", action="store_true", help="Print cluster ids (PIDs).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["config"] and not options["ids"]:
            self.stdout.write(f"VERSION: {'.'.join(str(v) for v in VERSION)}")
            for name in sorted(a for a in dir(Conf) if not a.startswith("__")):
                if name in _HIDDEN:
                    continue
                value = getattr(Conf, name)
                if value is not None:
                    self.stdout.write(f"{name}: {redact(name, value)}")
            return
        if options["ids"]:
            get_ids()
        else:
            info()
