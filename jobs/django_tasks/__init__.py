"""Django's Tasks framework (``django.tasks``, Django 6+) on Tablo's queue engine.

``TASKS = {"default": {"BACKEND": "jobs.django_tasks.TabloBackend", ...}}`` makes every
``@task`` an ordinary Tablo task: a ``jobs.Job`` row on the same database, run by
``qcluster``, retried by policy, shown on the operators' pages under its module path.
docs/django_tasks.md is the user's guide.
"""

from jobs.django_tasks.backend import TabloBackend
from jobs.django_tasks.tasks import TabloTask

__all__ = ["TabloBackend", "TabloTask"]
