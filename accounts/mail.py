"""Sending the accounts' mails, and saying so when it fails.

Django's password reset form logs a failed send and carries on, so its page
claims a mail went out. Every mail here goes through :func:`send`, which raises
``MailNotSent`` instead (after one log line), so the page can tell the truth.
"""

from __future__ import annotations

import smtplib

import structlog
from django.core.mail import EmailMultiAlternatives, mailers

logger = structlog.get_logger(__name__)


class MailNotSent(Exception):
    """The mail could not be handed to the mail server. Already logged."""


def send(*, message: EmailMultiAlternatives, purpose: str, user_id: int | None) -> None:
    """Send ``message`` or raise MailNotSent (logged once, without the address)."""
    try:
        sent = message.send(fail_silently=False)
    except Exception as exc:
        # Any backend error (refused connection, TLS, authentication, a refused
        # recipient): the user is told, the operator gets one line with the cause.
        _log_failure(purpose=purpose, user_id=user_id, exc=exc)
        raise MailNotSent(purpose) from exc
    if sent != 1:
        _log_failure(purpose=purpose, user_id=user_id, exc=None)
        raise MailNotSent(purpose)


def check_server(*, purpose: str) -> None:
    """Open and close a connection to the mail server, or raise MailNotSent.

    Used where nothing is sent (no account has the address) so that the page
    answers as it would for a known address when the server is down: an
    outage must not reveal which addresses have accounts.
    """
    try:
        connection = mailers.default
        connection.open()
        connection.close()
    except Exception as exc:
        _log_failure(purpose=purpose, user_id=None, exc=exc)
        raise MailNotSent(purpose) from exc


def _log_failure(*, purpose: str, user_id: int | None, exc: BaseException | None) -> None:
    if exc is None:
        error = "the backend sent nothing"
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        error = type(exc).__name__  # its text lists the addresses
    else:
        error = f"{type(exc).__name__}: {exc}"
    logger.error("mail not sent", purpose=purpose, user_id=user_id, error=error)
