"""Helpers for the admin page tests (Failed tasks, Queued tasks)."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User
from django.http import HttpResponse
from django.urls import reverse


def url(name: str, *args: object, query: str = "") -> str:
    return reverse(name, args=args) + (f"?{query}" if query else "")


def grant(user: User, *codenames: str) -> User:
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
    )
    return User.objects.get(pk=user.pk)  # fresh permission cache


def messages_of(response: HttpResponse) -> list[str]:
    return [str(message) for message in response.context["messages"]]
