"""Mail for the accounts tests: Django's in-memory outbox (pytest-django's default),
or a real SMTP backend pointed at a port where nothing listens."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from tests.support.mail import SMTP_DOWN


@pytest.fixture
def mail_server_down(settings):
    """SMTP to a loopback port nobody listens on: every send is refused."""
    settings.MAILERS = {"default": SMTP_DOWN}
    return settings


def link_in_last_mail(pattern: str = r"https?://\S+") -> str:
    """The one link of the newest mail in the outbox."""
    links = re.findall(pattern, mail.outbox[-1].body)
    assert len(links) == 1, mail.outbox[-1].body
    return links[0]


def mail_failures(caplog) -> list[dict]:
    return [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "mail not sent"
    ]
