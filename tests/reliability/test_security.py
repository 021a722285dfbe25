"""What a stranger, another user or a staff member without permission can and cannot do."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from tests.reliability.urls import private_routes

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="alice-pass-1234")


@pytest.fixture
def staff() -> User:
    """Staff, signed in to the admin, but granted no model permission."""
    return User.objects.create_user("staffer", password="staff-pass-1234", is_staff=True)


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("root", password="root-pass-1234")


def admin_changelists() -> list[str]:
    return [
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in admin.site._registry
    ]


def test_every_private_page_sends_a_stranger_to_sign_in() -> None:
    routes = private_routes()
    assert routes, "no private route found: the sweep would check nothing"
    client = Client()
    for route in routes:
        for method in ("get", "post"):
            response = getattr(client, method)(route.url())
            assert response.status_code in (302, 403, 405), (route.route, method)
            if response.status_code == 302:
                assert response["Location"].startswith(reverse("login")), route.route


def test_root_redirects_a_stranger_to_sign_in() -> None:
    response = Client().get("/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert response.status_code == 200


def test_login_requires_the_csrf_token(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-pass-1234"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_login_with_the_csrf_token_works(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("login"))
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("login"),
        {"username": "alice", "password": "alice-pass-1234", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_logout_is_post_only_and_needs_csrf(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 403
    assert client.session.get("_auth_user_id") == str(alice.pk)


def test_wrong_password_does_not_sign_in(alice: User) -> None:
    client = Client()
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_admin_sends_a_stranger_to_the_admin_login() -> None:
    client = Client()
    for url in ["/admin/", *admin_changelists()]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_admin_refuses_a_signed_in_user_who_is_not_staff(alice: User) -> None:
    alice.user_permissions.set(Permission.objects.all())
    client = Client()
    client.force_login(alice)
    for url in ["/admin/", *admin_changelists()]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_admin_refuses_staff_without_permission(staff: User) -> None:
    client = Client()
    client.force_login(staff)
    urls = admin_changelists()
    assert urls
    for url in urls:
        assert client.get(url).status_code == 403, url
    index = client.get("/admin/")
    assert index.status_code == 200
    for url in urls:
        assert url not in index.content.decode(), f"{url} listed for a staff without permission"


def test_admin_staff_with_view_permission_sees_only_that_model(staff: User) -> None:
    staff.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = Client()
    client.force_login(staff)
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 200
    assert client.get(reverse("admin:auth_group_changelist")).status_code == 403
    assert client.get(reverse("admin:auth_user_add")).status_code == 403


def test_every_admin_changelist_opens_for_a_superuser(superuser: User) -> None:
    client = Client()
    client.force_login(superuser)
    for url in admin_changelists():
        assert client.get(url).status_code == 200, url


def test_admin_actions_need_csrf(superuser: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [superuser.pk], "post": "yes"},
    )
    assert response.status_code == 403
    assert User.objects.filter(pk=superuser.pk).exists()


def test_healthz_reveals_no_secret_or_connection_string(settings) -> None:
    response = Client().get("/healthz")
    assert response.status_code in (200, 503)
    body = response.content.decode()
    for word in ("SECRET", "password", "://", "django-insecure", settings.SECRET_KEY):
        assert word not in body
    assert str(settings.DATABASES["default"]["NAME"]) not in body
