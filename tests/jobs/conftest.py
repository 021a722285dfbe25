from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def staff(db) -> User:
    """Staff, signed in to the admin, but granted no model permission."""
    return User.objects.create_user("operator", password="x", is_staff=True)
