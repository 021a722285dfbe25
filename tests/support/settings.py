"""config.settings as a process started with a given environment reads it, in this process.

``load_settings`` runs the settings module's code afresh in a module of its own,
with ``os.environ`` holding only the given variables meanwhile: what a
``manage.py`` started with that environment would see, without starting one.
``settings_of`` turns what it reads into ``override_settings`` for the settings
a request or a system check reads at run time (not the ones fixed when Django
starts: apps, databases, caches, logging, django-q2's Conf).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from contextlib import AbstractContextManager
from types import ModuleType
from unittest import mock

from django.test import override_settings

import config.settings

_loaded = itertools.count()
# Fixed at start-up in a real process; this process keeps its own.
STARTUP_SETTINGS = frozenset(
    {"CACHES", "DATABASES", "INSTALLED_APPS", "LOGGING", "LOGGING_CONFIG", "Q_CLUSTER"}
)


def load_settings(**env: str) -> ModuleType:
    """The settings module as read with exactly ``env`` in the environment."""
    spec = importlib.util.spec_from_file_location(
        f"tests_settings_probe_{next(_loaded)}", config.settings.__file__
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, env, clear=True):
        spec.loader.exec_module(module)
    return module


def values(module: ModuleType) -> dict[str, object]:
    """The settings (upper-case names) a settings module defines."""
    return {name: getattr(module, name) for name in dir(module) if name.isupper()}


def settings_of(**env: str) -> AbstractContextManager:
    """``override_settings`` with what ``env`` configures, start-up settings excepted."""
    loaded = values(load_settings(**env))
    return override_settings(
        **{name: value for name, value in loaded.items() if name not in STARTUP_SETTINGS}
    )
