"""Signed, expiring confirmation links (django.core.signing, salted per purpose)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing

_SALT = "accounts.confirm-email"


class LinkExpired(Exception):
    """The link's signature is good but older than ACCOUNT_CONFIRMATION_MAX_AGE_SECONDS."""


class LinkInvalid(Exception):
    """The link was not made here, or was altered."""


@dataclass(frozen=True, kw_only=True)
class ConfirmationClaim:
    user_id: int
    email: str


def make_confirmation_token(*, user: AbstractBaseUser) -> str:
    # The address is signed too: a link confirms the address it was sent to only.
    return signing.dumps({"u": user.pk, "e": getattr(user, "email", "")}, salt=_SALT)


def read_confirmation_token(token: str) -> ConfirmationClaim:
    try:
        data = signing.loads(
            token, salt=_SALT, max_age=settings.ACCOUNT_CONFIRMATION_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired:
        raise LinkExpired from None
    except signing.BadSignature:
        raise LinkInvalid from None
    if not isinstance(data, dict) or not isinstance(data.get("u"), int):
        raise LinkInvalid
    return ConfirmationClaim(user_id=data["u"], email=str(data.get("e", "")))
