"""Sign-up, confirmation, sign-in and password reset in Chromium at 390, 1024 and
1440 px: a newcomer signs up, confirms from the mailed link and signs in; a user resets
a password, and is told the truth when the mail cannot be sent. No page scrolls
sideways or breaks the Content Security Policy.

Screenshots of every page and width are written to the test's own ``tmp_path``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core import mail
from playwright.sync_api import expect

from tests.browser.layout import Browser, chromium, no_horizontal_overflow
from tests.support.mail import SMTP_DOWN

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTHS = [390, 1024, 1440]
PASSWORD = "newcomer-browser-pass-7"
LONG_ADDRESS = "someone.with.a.really.long.mailbox.name.for.layout.checks@example-company.test"


@pytest.fixture
def visitor(live_server, monkeypatch, tmp_path: Path, request) -> Iterator[Browser]:
    """A browser that is not signed in, at the test's width."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium(live_server.url, tmp_path, width=request.getfixturevalue("width")) as session:
        yield session
        session.assert_no_violations()


def fits(session: Browser, name: str, width: int) -> None:
    session.shot(f"{name}-{width}")
    assert no_horizontal_overflow(session.page), name


def mailed_link() -> str:
    (link,) = re.findall(r"https?://\S+", mail.outbox[-1].body)
    return link


@pytest.mark.parametrize("width", WIDTHS)
def test_a_newcomer_signs_up_confirms_and_signs_in(visitor, width):
    page = visitor.page
    page.goto(f"{visitor.base}/accounts/login/")
    page.get_by_role("link", name="Create an account").first.click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    fits(visitor, "signup", width)

    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Email address").fill(LONG_ADDRESS)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.get_by_text(LONG_ADDRESS)).to_be_visible()
    fits(visitor, "signup-done", width)

    # Not confirmed yet: signing in says so and offers the link again.
    page.goto(f"{visitor.base}/accounts/login/")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Your account is not confirmed yet")).to_be_visible()
    expect(page.get_by_role("link", name="Send the confirmation link again")).to_be_visible()
    fits(visitor, "login-unconfirmed", width)

    page.goto(mailed_link())
    expect(page.get_by_role("heading", name="Confirm your account")).to_be_visible()
    fits(visitor, "confirm", width)
    page.get_by_role("button", name="Confirm my account").click()
    expect(page.get_by_text("Your email address is confirmed.")).to_be_visible()
    fits(visitor, "login-confirmed", width)

    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your tablos")).to_be_visible()
    assert User.objects.get(username="newcomer").is_active


@pytest.mark.parametrize("width", WIDTHS)
def test_sign_up_mistakes_are_shown_next_to_their_fields(visitor, width):
    User.objects.create_user("taken", email="taken@example.com", password=PASSWORD)
    page = visitor.page
    page.goto(f"{visitor.base}/accounts/signup/")
    page.get_by_label("Username").fill("TAKEN")
    page.get_by_label("Email address").fill("Taken@Example.com")
    page.get_by_label("Password", exact=True).fill("12345678")
    page.get_by_label("Password confirmation").fill("12345678")
    page.get_by_role("button", name="Create account").click()

    expect(page.get_by_text("This username is taken: choose another one.")).to_be_visible()
    expect(page.get_by_text("An account already uses this email address.")).to_be_visible()
    expect(page.get_by_text("This password is too common.")).to_be_visible()
    fits(visitor, "signup-errors", width)


@pytest.mark.parametrize("width", WIDTHS)
def test_an_expired_or_broken_link_offers_a_new_one(visitor, width):
    page = visitor.page
    page.goto(f"{visitor.base}/accounts/confirm/not-a-real-token/")
    page.get_by_role("button", name="Confirm my account").click()
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()
    fits(visitor, "confirm-invalid", width)

    page.get_by_role("link", name="Send me a new link").click()
    expect(page.get_by_role("heading", name="Send the confirmation link again")).to_be_visible()
    fits(visitor, "resend", width)
    page.get_by_label("Email address").fill("someone@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    fits(visitor, "resend-done", width)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_password_is_reset_and_a_failed_mail_is_told(visitor, settings, width):
    User.objects.create_user("fay", email="fay@example.com", password="old-pass-phrase-91")
    page = visitor.page
    page.goto(f"{visitor.base}/accounts/login/")
    fits(visitor, "login", width)
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
    fits(visitor, "reset-form", width)

    # The mail server is down: the page says the mail was not sent.
    locmem = settings.MAILERS
    settings.MAILERS = {"default": SMTP_DOWN}
    page.get_by_label("Email").fill("fay@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("alert")).to_contain_text("We could not send the email just now")
    expect(page.get_by_role("heading", name="Check your email")).to_have_count(0)
    fits(visitor, "reset-mail-failed", width)

    settings.MAILERS = locmem
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    fits(visitor, "reset-done", width)

    page.goto(mailed_link())
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    fits(visitor, "reset-confirm", width)
    page.get_by_label("New password", exact=True).fill("a-fresh-pass-phrase-92")
    page.get_by_label("New password confirmation").fill("a-fresh-pass-phrase-92")
    page.get_by_role("button", name="Change my password").click()
    expect(page.get_by_role("heading", name="Your password is changed")).to_be_visible()
    fits(visitor, "reset-complete", width)
    assert User.objects.get(username="fay").check_password("a-fresh-pass-phrase-92")
