"""The project's settings with django-tasks-db beside Tablo's backend (the benchmark's peer).

Only benchmarks/django_tasks_bench.py uses it, with benchmarks/requirements-django-tasks-db.txt
installed: ``DJANGO_SETTINGS_MODULE=benchmarks.django_tasks_db_settings``. One process can
then enqueue through both backends in turns: ``default`` is django-tasks-db's, ``tablo``
Tablo's.
"""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, TASKS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}, "tablo": TASKS["default"]}
