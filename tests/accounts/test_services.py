"""The accounts services where the pages cannot reach: a sign-up that loses a race."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core import mail

from accounts import services
from accounts.models import Signup

pytestmark = pytest.mark.django_db


def test_a_sign_up_whose_name_was_taken_meanwhile_creates_and_sends_nothing():
    # The form checked the name; another sign-up committed it before this one.
    User.objects.create_user("dora", email="first@example.com")

    with pytest.raises(services.NameTaken):
        services.signup_create(
            username="dora",
            email="second@example.com",
            password="a-long-unusual-passphrase-42",
            confirm_url=lambda token: f"https://tablo.example/confirm/{token}/",
        )

    assert list(User.objects.values_list("email", flat=True)) == ["first@example.com"]
    assert not Signup.objects.exists()
    assert mail.outbox == []


def test_the_link_mailed_is_the_one_the_view_builds():
    user = services.signup_create(
        username="dora",
        email="dora@example.com",
        password="a-long-unusual-passphrase-42",
        confirm_url=lambda token: f"https://tablo.example/confirm/{token}/",
    )

    (message,) = mail.outbox
    token = message.body.split("https://tablo.example/confirm/", 1)[1].split("/", 1)[0]
    assert services.signup_confirm(token=token) == user
    user.refresh_from_db()
    assert user.is_active
