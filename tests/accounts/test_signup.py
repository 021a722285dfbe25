"""Sign-up with email confirmation, through the pages a person uses."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts import tokens
from accounts.forms import EMAIL_TAKEN, NOT_CONFIRMED, USERNAME_TAKEN
from accounts.models import Signup
from tests.accounts.conftest import link_in_last_mail, mail_failures
from tests.support.mail import LOCMEM, SMTP_DOWN

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase-42"


def sign_up(client, username="dora", email="dora@example.com", password=PASSWORD, **extra):
    return client.post(
        reverse("accounts:signup"),
        {"username": username, "email": email, "password1": password, "password2": password}
        | extra,
    )


def confirm_path() -> str:
    return urlsplit(link_in_last_mail()).path


def test_sign_up_creates_an_inactive_account_and_mails_a_link(client):
    response = sign_up(client)

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:signup_done")
    user = User.objects.get(username="dora")
    assert user.email == "dora@example.com"
    assert not user.is_active
    assert user.check_password(PASSWORD)
    assert Signup.objects.get(user=user).confirmed_at is None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["dora@example.com"]
    assert mail.outbox[0].subject == "Confirm your Tablo account"
    assert confirm_path().startswith("/accounts/confirm/")
    done = client.get(response["Location"])
    assert "dora@example.com" in done.content.decode()


def test_an_unconfirmed_account_cannot_sign_in_and_is_told_why(client):
    sign_up(client)

    response = client.post(reverse("login"), {"username": "dora", "password": PASSWORD})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Your account is not confirmed yet" in page
    assert reverse("accounts:resend") in page
    assert "_auth_user_id" not in client.session


def test_a_wrong_password_on_an_unconfirmed_account_says_nothing_of_it(client):
    sign_up(client)

    response = client.post(reverse("login"), {"username": "dora", "password": "wrong-one-77"})

    page = response.content.decode()
    assert NOT_CONFIRMED not in page
    assert "Please enter a correct username and password" in page


def test_opening_the_link_asks_first_and_the_button_confirms(client):
    sign_up(client)
    path = confirm_path()

    shown = client.get(path)
    assert shown.status_code == 200
    assert "Confirm my account" in shown.content.decode()
    assert not User.objects.get(username="dora").is_active  # a GET changes nothing

    confirmed = client.post(path)
    assert confirmed.status_code == 302
    assert confirmed["Location"] == reverse("login")
    user = User.objects.get(username="dora")
    assert user.is_active
    assert Signup.objects.get(user=user).confirmed_at is not None

    signed_in = client.post(reverse("login"), {"username": "dora", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_confirming_twice_is_harmless(client):
    sign_up(client)
    path = confirm_path()
    client.post(path)
    first = Signup.objects.get().confirmed_at

    again = client.post(path)

    assert again.status_code == 302
    assert Signup.objects.get().confirmed_at == first


def test_an_expired_link_is_refused_and_offers_a_new_one(client, settings):
    sign_up(client)
    settings.ACCOUNT_CONFIRMATION_MAX_AGE_SECONDS = 3600
    old = _token_signed_at(User.objects.get(username="dora"), seconds_ago=7200)

    response = client.post(reverse("accounts:confirm", args=[old]))

    assert response.status_code == 400
    page = response.content.decode()
    assert "This link has expired" in page
    assert reverse("accounts:resend") in page
    assert not User.objects.get(username="dora").is_active


def _token_signed_at(user: User, *, seconds_ago: int) -> str:
    """A link made ``seconds_ago``: django.core.signing dates it with time.time()."""
    now = time.time()
    with mock.patch("django.core.signing.time.time", return_value=now - seconds_ago):
        return tokens.make_confirmation_token(user=user)


@pytest.mark.parametrize(
    "token",
    ["nonsense", "eyJ1Ijo1LCJlIjoieEB5LnoifQ:1abcde:forgedsignatureforgedsignature00"],
)
def test_a_made_up_or_altered_link_is_refused(client, token):
    sign_up(client)

    response = client.post(reverse("accounts:confirm", args=[token]))

    assert response.status_code == 400
    assert "This link is not valid" in response.content.decode()
    assert not User.objects.get(username="dora").is_active


def test_a_link_for_an_address_that_changed_confirms_nothing(client):
    sign_up(client)
    path = confirm_path()
    User.objects.filter(username="dora").update(email="other@example.com")

    response = client.post(path)

    assert response.status_code == 400
    assert not User.objects.get(username="dora").is_active


def test_duplicate_username_and_email_get_clear_errors(client):
    User.objects.create_user("Dora", email="DORA@example.com", password=PASSWORD)

    response = sign_up(client, username="dora", email="dora@EXAMPLE.com")

    assert response.status_code == 400
    page = response.content.decode()
    assert USERNAME_TAKEN in page
    assert "An account already uses this email address." in page
    assert EMAIL_TAKEN.split(":")[0] in page
    assert User.objects.count() == 1
    assert mail.outbox == []


def test_weak_or_mismatched_passwords_are_refused(client):
    weak = sign_up(client, password="12345678")
    assert weak.status_code == 400
    assert "This password is too common." in weak.content.decode()

    mismatch = sign_up(client, password2="something-else-entirely-9")
    assert mismatch.status_code == 400
    assert "The two password fields didn\u2019t match." in mismatch.content.decode()
    assert not User.objects.exists()


def test_bad_input_gets_field_errors_not_a_crash(client):
    response = sign_up(client, username="no spaces allowed!", email="not-an-address")

    assert response.status_code == 400
    page = response.content.decode()
    assert "Enter a valid username." in page
    assert "Enter a valid email address." in page


def test_a_stale_unconfirmed_sign_up_gives_its_name_and_address_back(client, settings):
    sign_up(client)
    Signup.objects.update(
        created_at=Signup.objects.get().created_at - timedelta(days=10),
        last_sent_at=Signup.objects.get().last_sent_at - timedelta(days=10),
    )

    response = sign_up(client, password="another-long-passphrase-43")

    assert response.status_code == 302
    user = User.objects.get(username="dora")
    assert user.check_password("another-long-passphrase-43")
    assert Signup.objects.count() == 1


def test_an_inactive_account_made_by_an_admin_keeps_its_name(client):
    User.objects.create_user("dora", email="dora@example.com", is_active=False)

    response = sign_up(client)

    assert response.status_code == 400
    assert USERNAME_TAKEN in response.content.decode()


def test_resending_sends_a_new_working_link_at_most_once_a_minute(client):
    sign_up(client)
    Signup.objects.update(last_sent_at=Signup.objects.get().last_sent_at - timedelta(minutes=5))

    response = client.post(reverse("accounts:resend"), {"email": "DORA@example.com"})

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:resend_done")
    assert len(mail.outbox) == 2
    client.post(confirm_path())
    assert User.objects.get(username="dora").is_active

    # Straight after a mail, a second click sends nothing more.
    User.objects.filter(username="dora").update(is_active=False)
    Signup.objects.update(confirmed_at=None, last_sent_at=timezone.now() - timedelta(minutes=5))
    client.post(reverse("accounts:resend"), {"email": "dora@example.com"})
    client.post(reverse("accounts:resend"), {"email": "dora@example.com"})
    assert len(mail.outbox) == 3


def test_resending_for_an_unknown_or_confirmed_address_looks_the_same(client):
    sign_up(client)
    client.post(confirm_path())
    outbox = len(mail.outbox)

    for email in ("dora@example.com", "nobody@example.com"):
        response = client.post(reverse("accounts:resend"), {"email": email})
        assert response.status_code == 302
        assert response["Location"] == reverse("accounts:resend_done")
    assert len(mail.outbox) == outbox


def test_sign_up_when_mail_fails_keeps_the_account_and_says_so(client, mail_server_down, caplog):
    with caplog.at_level(logging.INFO):
        response = sign_up(client)

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:resend")
    page = client.get(response["Location"]).content.decode()
    assert "we could not send the confirmation email" in page
    assert User.objects.filter(username="dora", is_active=False).exists()
    failures = mail_failures(caplog)
    assert len(failures) == 1
    assert failures[0]["purpose"] == "confirm_email"
    assert failures[0]["error"].startswith("ConnectionRefusedError")


@pytest.mark.parametrize("email", ["dora@example.com", "nobody@example.com"])
def test_resend_when_mail_fails_says_so_whether_or_not_the_address_is_known(
    client, settings, mail_server_down, caplog, email
):
    settings.MAILERS = {"default": LOCMEM}
    sign_up(client)
    Signup.objects.update(last_sent_at=None)
    settings.MAILERS = {"default": SMTP_DOWN}

    with caplog.at_level(logging.INFO):
        response = client.post(reverse("accounts:resend"), {"email": email})

    assert response.status_code == 503
    assert "We could not send the email just now" in response.content.decode()
    assert len(mail_failures(caplog)) == 1


def test_signed_in_users_are_sent_on_from_the_sign_up_page(client):
    user = User.objects.create_user("eve", password=PASSWORD)
    client.force_login(user)

    response = client.get(reverse("accounts:signup"))

    assert response.status_code == 302
    assert response["Location"] == reverse("tablos:list")
