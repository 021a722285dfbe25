"""Reads of accounts: which usernames and addresses are taken."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.utils import timezone


def stale_signups_q() -> Q:
    """Unconfirmed sign-ups whose last link has expired: they hold no name or address
    (a new sign-up replaces them), so nobody can squat someone else's address."""
    cutoff = timezone.now() - timedelta(seconds=settings.ACCOUNT_CONFIRMATION_MAX_AGE_SECONDS)
    link_expired = Q(signup__last_sent_at__lt=cutoff) | Q(
        signup__last_sent_at__isnull=True, signup__created_at__lt=cutoff
    )
    # signup__isnull=False: accounts made in the admin or by createsuperuser never go stale.
    return link_expired & Q(
        signup__isnull=False,
        signup__confirmed_at__isnull=True,
        is_active=False,
        last_login__isnull=True,
    )


def _holders(q: Q) -> QuerySet[User]:
    return User.objects.filter(q).exclude(stale_signups_q())


def username_taken(username: str) -> bool:
    return _holders(Q(username__iexact=username)).exists()


def email_taken(email: str) -> bool:
    return _holders(Q(email__iexact=email)).exists()


def pending_user_for_email(email: str) -> User | None:
    """The unconfirmed sign-up that uses ``email``, if any (for resending its link; an
    expired one too: a new link makes it current again)."""
    return (
        User.objects.filter(email__iexact=email, is_active=False, signup__confirmed_at__isnull=True)
        .order_by("-date_joined")
        .first()
    )
