"""Password reset: the mail goes out, or the page says it could not, without telling
whether the address has an account."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse

from tests.accounts.conftest import link_in_last_mail, mail_failures

pytestmark = pytest.mark.django_db

OLD = "the-old-passphrase-11"
NEW = "a-brand-new-passphrase-12"


@pytest.fixture
def fay():
    return User.objects.create_user("fay", email="fay@example.com", password=OLD)


def ask_reset(client, email):
    return client.post(reverse("password_reset"), {"email": email})


def _csrf_free(page: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)


def test_the_whole_reset_flow_changes_the_password(client, fay):
    response = ask_reset(client, "FAY@example.com")

    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    done = client.get(response["Location"]).content.decode()
    assert "Check your email" in done
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["fay@example.com"]
    assert mail.outbox[0].subject == "Reset your Tablo password"

    # The link leads to a form (Django swaps the token into the session first).
    form_page = client.get(urlsplit(link_in_last_mail()).path, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    changed = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW}
    )
    assert changed.status_code == 302
    complete = client.get(changed["Location"]).content.decode()
    assert "Your password is changed" in complete
    fay.refresh_from_db()
    assert fay.check_password(NEW)


def test_a_used_or_broken_reset_link_says_so(client, fay):
    ask_reset(client, "fay@example.com")
    path = urlsplit(link_in_last_mail()).path
    broken = path.rstrip("/")[:-3] + "xyz/"

    response = client.get(broken, follow=True)

    assert "This link is not valid" in response.content.decode()


def test_an_unknown_address_gets_the_same_answer_and_no_mail(client, fay):
    response = ask_reset(client, "nobody@example.com")

    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


def test_when_mail_fails_the_page_says_so_and_the_failure_is_logged_once(
    client, fay, mail_server_down, caplog
):
    with caplog.at_level(logging.INFO):
        response = ask_reset(client, "fay@example.com")

    assert response.status_code == 503
    page = response.content.decode()
    assert "We could not send the email just now" in page
    assert "Please try again in a few minutes" in page
    assert "Check your email" not in page
    assert "Traceback" not in page
    failures = mail_failures(caplog)
    assert len(failures) == 1
    assert failures[0]["purpose"] == "password_reset"
    assert failures[0]["user_id"] == fay.pk
    # Django's own "Failed to send password reset email" line is not written too.
    assert not [r for r in caplog.records if r.name == "django.contrib.auth"]
    assert not [r for r in caplog.records if r.exc_info]


def test_when_mail_fails_an_unknown_address_gets_the_same_page(
    client, fay, mail_server_down, caplog
):
    known = ask_reset(client, "fay@example.com")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        unknown = ask_reset(client, "nobody@example.com")

    assert unknown.status_code == known.status_code == 503
    assert _csrf_free(unknown.content.decode()).replace("nobody", "fay") == _csrf_free(
        known.content.decode()
    )
    assert len(mail_failures(caplog)) == 1


def test_a_malformed_address_is_a_form_error(client):
    response = client.post(reverse("password_reset"), {"email": "not an address"})

    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert mail.outbox == []
