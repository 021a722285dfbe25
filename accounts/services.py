"""Writes of accounts: sign up, confirm the address, send the link again.

A new account is inactive (Django's ModelBackend refuses it) until the signed link
mailed to it is opened. Services take a ``confirm_url`` function (token -> absolute
URL) from the view: they never build HTTP objects themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog
from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from accounts import mail, selectors, tokens
from accounts.models import Signup

logger = structlog.get_logger(__name__)

# A link asked for again within this long is not sent again (one mail per click is
# enough, and a resend form must not be a way to flood someone's inbox).
RESEND_INTERVAL = timedelta(seconds=60)


class NameTaken(ValueError):
    """The username or address was taken by a sign-up that committed first."""


class ConfirmationFailed(Exception):
    """The link cannot confirm anything; ``reason`` is "expired" or "invalid"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def signup_create(
    *, username: str, email: str, password: str, confirm_url: Callable[[str], str]
) -> User:
    """Create the inactive account and mail its confirmation link.

    Raises NameTaken when a concurrent sign-up took the name, and MailNotSent (the
    account is kept: the link can be asked for again) when the mail fails.
    """
    try:
        with transaction.atomic():
            # Sign-ups whose link expired unused give their name and address back.
            stale = User.objects.filter(
                Q(username__iexact=username) | Q(email__iexact=email)
            ).filter(selectors.stale_signups_q())
            stale.delete()
            user = User.objects.create_user(
                username=username, email=email, password=password, is_active=False
            )
            Signup.objects.create(user=user)
    except IntegrityError:
        raise NameTaken(username) from None
    logger.info("account signed up", user_id=user.pk)
    confirmation_send(user=user, confirm_url=confirm_url)
    return user


def confirmation_send(*, user: User, confirm_url: Callable[[str], str]) -> None:
    """Mail ``user`` a fresh confirmation link (raises MailNotSent)."""
    context = {
        "user": user,
        "confirm_url": confirm_url(tokens.make_confirmation_token(user=user)),
        "valid_hours": settings.ACCOUNT_CONFIRMATION_MAX_AGE_SECONDS // 3600,
    }
    subject = "".join(render_to_string("accounts/mail/confirm_subject.txt", context).splitlines())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("accounts/mail/confirm_body.txt", context),
        to=[user.email],
    )
    mail.send(message=message, purpose="confirm_email", user_id=user.pk)
    Signup.objects.filter(user=user).update(last_sent_at=timezone.now())
    logger.info("confirmation mail sent", user_id=user.pk)


def confirmation_resend(*, email: str, confirm_url: Callable[[str], str]) -> None:
    """Send a new link to the unconfirmed account using ``email``, if there is one.

    Says nothing about whether there is one: a missing account, a confirmed one and
    a link sent less than a minute ago all return quietly. When the mail server is
    unreachable MailNotSent is raised in every case (see mail.check_server).
    """
    user = selectors.pending_user_for_email(email)
    if user is None:
        mail.check_server(purpose="confirm_email")
        return
    last_sent = Signup.objects.filter(user=user).values_list("last_sent_at", flat=True).first()
    if last_sent is not None and timezone.now() - last_sent < RESEND_INTERVAL:
        logger.info("confirmation resend skipped: sent moments ago", user_id=user.pk)
        return
    confirmation_send(user=user, confirm_url=confirm_url)


def signup_confirm(*, token: str) -> User:
    """Activate the account the link names. Opening a link twice is fine (it is
    already active: nothing changes). Raises ConfirmationFailed."""
    try:
        claim = tokens.read_confirmation_token(token)
    except tokens.LinkExpired:
        raise ConfirmationFailed("expired") from None
    except tokens.LinkInvalid:
        raise ConfirmationFailed("invalid") from None
    with transaction.atomic():
        signup = (
            Signup.objects.select_for_update()
            .select_related("user")
            .filter(user_id=claim.user_id)
            .first()
        )
        # An address changed since the link was sent: the link confirms nothing.
        if signup is None or signup.user.email.lower() != claim.email.lower():
            raise ConfirmationFailed("invalid")
        if signup.confirmed_at is None:
            signup.confirmed_at = timezone.now()
            signup.save(update_fields=["confirmed_at"])
            signup.user.is_active = True
            signup.user.save(update_fields=["is_active"])
            logger.info("account confirmed", user_id=signup.user.pk)
    return signup.user
