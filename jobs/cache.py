"""The shared cache's table: created after every ``migrate`` (a no-op when it exists).

django-q2 keeps ``cached=True`` results, ``async_iter`` parts and the cluster
statistics ``qinfo``/``qmonitor`` read in the ``default`` cache, which must be
shared by every process: the database cache by default (settings ``CACHES``).
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command


def create_cache_table(sender: Any = None, using: str = "default", **kwargs: Any) -> None:
    """``post_migrate`` receiver: ``createcachetable`` for the database just migrated."""
    call_command("createcachetable", database=using, verbosity=0)
