from django.conf import settings
from django.db import models


class Signup(models.Model):
    """An account made through the sign-up page, and whether its address is confirmed.

    The user stays inactive (cannot sign in) until ``confirmed_at`` is set. Accounts
    made any other way (``createsuperuser``, the admin) have no row here.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="signup"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # When the last confirmation mail went out: resending waits a little after it.
    last_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        state = "confirmed" if self.confirmed_at else "pending"
        return f"sign-up of user {self.user_id} ({state})"
