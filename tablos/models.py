import uuid

from django.conf import settings
from django.core.validators import MinLengthValidator
from django.db import models


class Tablo(models.Model):
    """A user's board. Its files live in ``files.TabloFile`` (no FK, see there)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tablos"
    )
    name = models.CharField(max_length=200, validators=[MinLengthValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # tablos.selectors: the owner's tablos, newest first.
            models.Index(fields=["owner", "-created_at"], name="tablos_owner_created_idx"),
            # tablos.admin changelist: newest first over the whole table.
            models.Index(fields=["-created_at"], name="tablos_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name
