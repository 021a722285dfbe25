import uuid

from django.db import models


class TabloFile(models.Model):
    """One stored object of a tablo.

    ``tablo_id`` is a plain indexed column, not a foreign key: the row must
    outlive a deleted tablo so that the purge and the orphan cleanup can find
    the object to delete (object first, row second).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tablo_id = models.UUIDField(db_index=True)
    storage_key = models.CharField(max_length=1024, unique=True)
    original_name = models.CharField(max_length=1024)
    content_type = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # files.selectors.tablo_files: one tablo's files, newest first.
            models.Index(fields=["tablo_id", "-created_at"], name="files_tablo_created_idx"),
            # files.admin changelist: newest first over the whole table.
            models.Index(fields=["-created_at"], name="files_created_idx"),
        ]

    def __str__(self) -> str:
        return self.original_name
