"""``manage.py startjob <app> <name>``: a new job module and a test that runs it.

The job goes to ``<app>/jobs/<name>.py``, a Tablo ``@job`` or, with ``--django-task``,
a Django ``@task`` (Django 6's Tasks on the same queue, docs/django_tasks.md);
``<app>/jobs/__init__.py`` (written once) imports every module of the package, and
``jobs.apps`` autodiscovers ``<app>.jobs`` next to ``<app>.tasks``, so the job is
registered in every process.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from django.apps import apps
from django.conf import settings

from jobs.engine import registry

MAX_NAME = 60
_JOB_NAME = re.compile(rf"^[a-z_][a-z0-9_]{{0,{MAX_NAME - 1}}}$")

PACKAGE_INIT = '''"""Jobs of this app, one module each (manage.py startjob), all imported here."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
'''

JOB_TEMPLATE = '''"""The job ``{job_name}``."""

from __future__ import annotations

import structlog

from jobs.engine.registry import job

logger = structlog.stdlib.get_logger(__name__)


{decorator}
def {name}(item_id: str) -> str:
    """Take JSON-friendly arguments (ids as strings), load what is needed, call a service.{doc}"""
    logger.info("{job_name} ran", item_id=item_id)
    return item_id
'''

TEST_TEMPLATE = """from __future__ import annotations

import pytest
from django_q.conf import Conf

from jobs.engine import registry
from {app}.jobs.{name} import {name}

pytestmark = pytest.mark.django_db


def test_{name}_returns_its_argument() -> None:
    assert {name}("42") == "42"


def test_{name}_runs_through_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.get("{job_name}").func is {name}
    # Sync mode runs the task inline, as a worker would; a failure raises.
    monkeypatch.setattr(Conf, "SYNC", True)
    assert registry.enqueue("{job_name}", "42", on_commit=False)
"""


DJANGO_TASK_TEMPLATE = '''"""The Django task ``{name}``, run by qcluster (docs/django_tasks.md)."""

from __future__ import annotations

import structlog
from django.tasks import task

logger = structlog.stdlib.get_logger(__name__)


@task(max_attempts=5, timeout=60)
def {name}(item_id: str) -> str:
    """Take JSON-friendly arguments (ids as strings), load what is needed, call a service.

    Enqueue it with ``{name}.enqueue("42")``; read its outcome with
    ``{name}.get_result(result_id)``.
    """
    logger.info("{name} ran", item_id=item_id)
    return item_id
'''

DJANGO_TASK_TEST_TEMPLATE = """from __future__ import annotations

import pytest
from django.tasks import TaskResultStatus

from {app}.jobs.{name} import {name}

pytestmark = pytest.mark.django_db


def test_{name}_returns_its_argument() -> None:
    assert {name}.call("42") == "42"


def test_{name}_is_queued_and_read_back() -> None:
    result = {name}.enqueue("42")
    assert result.status == TaskResultStatus.READY
    assert {name}.get_result(result.id).args == ["42"]


def test_{name}_runs_inline_on_djangos_immediate_backend(settings) -> None:
    immediate = "django.tasks.backends.immediate.ImmediateBackend"
    settings.TASKS = {{"default": {{"BACKEND": immediate}}}}
    result = {name}.enqueue("42")
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, "42")
"""


TRANSACTIONAL_DOC = """

    transactional=True: the database writes of this function commit in one transaction
    with the task's completion, so they are applied once even if a worker dies. Writes
    outside the database (S3, e-mail, HTTP) are not covered: make them idempotent
    (object first, row second).
    """


LIMITS_DOC = """

    Flow control, enforced when a worker claims the task, across every node: a task
    over a limit waits in the queue (no attempt used) while the next one runs."""


class ScaffoldError(ValueError):
    """The job cannot be generated; nothing was written."""


@dataclass(frozen=True)
class Limits:
    """The flow-control options a new job starts with (``startjob --concurrency`` ...)."""

    concurrency: int | None = None
    per_key: bool = False  # the limit is per value of the first argument
    rate: str | None = None  # "N/SECONDS", e.g. "100/10"
    expires: float | None = None  # seconds after the enqueue: not started by then, not run

    def options(self) -> list[str]:
        found = []
        if self.per_key and self.concurrency is None:
            raise ScaffoldError("--per-key needs --concurrency N: the limit each key gets.")
        if self.concurrency is not None:
            if not 1 <= self.concurrency <= 100_000:
                raise ScaffoldError("--concurrency must be a whole number from 1 to 100000.")
            found.append(f"concurrency={self.concurrency}")
            if self.per_key:
                found.append("concurrency_key=lambda item_id: item_id")
        if self.rate is not None:
            count, _, seconds = self.rate.partition("/")
            try:
                n, window = int(count), float(seconds)
            except ValueError:
                n, window = 0, 0.0
            if not (1 <= n <= 1_000_000 and 0 < window <= 86400 and count.isdigit()):
                raise ScaffoldError(
                    f"--rate {self.rate[:40]!r}: give N/SECONDS, at most N starts in any "
                    "SECONDS, such as 100/10 (N from 1, SECONDS up to 86400)."
                )
            found.append(f"rate=({n}, {window!r})")
        if self.expires is not None:
            # The same bounds as @job(expires=...): above zero, at most ten years.
            if not 0 < self.expires <= 10 * 365 * 86400:
                raise ScaffoldError(
                    f"--expires {self.expires:g}: give the seconds a task may wait to start, "
                    "more than 0 and at most ten years (315360000), such as 3600."
                )
            found.append(f"expires={self.expires:g}")
        return found


def _decorator(job_name: str, options: list[str]) -> str:
    if not options:
        return f'@job("{job_name}", timeout=60, max_attempts=5)'
    lines = [f'    "{job_name}",', "    timeout=60,", "    max_attempts=5,"]
    lines += [f"    {option}," for option in options]
    return "@job(\n" + "\n".join(lines) + "\n)"


@dataclass(frozen=True)
class Scaffold:
    job_name: str
    files: dict[Path, str]  # path -> content, only the files to create


def plan_job(
    *,
    app_label: str,
    name: str,
    tests_dir: Path | None = None,
    transactional: bool = False,
    django_task: bool = False,
    limits: Limits | None = None,
) -> Scaffold:
    """What ``startjob`` would write; raises ScaffoldError (writing nothing) when it cannot.

    ``django_task``: a Django ``@task`` (its ``job_name`` is then its module path)."""
    if transactional and django_task:
        raise ScaffoldError(
            "--transactional declares a Tablo @job; a Django task cannot be transactional."
        )
    limit_options = (limits or Limits()).options()
    if limit_options and django_task:
        raise ScaffoldError(
            "--concurrency, --rate and --expires declare a Tablo @job's flow control; "
            "not a Django task."
        )
    # ASCII and short: the name becomes a file name and part of a dotted path.
    if not _JOB_NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"{name[:80]!r} is not a valid job name: use a lowercase ASCII Python identifier "
            f"of at most {MAX_NAME} characters, such as send_digest."
        )
    try:
        app = apps.get_app_config(app_label)
    except LookupError:
        project_apps = sorted(
            a.label for a in apps.get_app_configs() if _is_project_app(Path(a.path))
        )
        raise ScaffoldError(
            f"unknown app {app_label!r}; the project's apps are: {', '.join(project_apps)}"
        ) from None
    app_path = Path(app.path)
    if not _is_project_app(app_path):
        raise ScaffoldError(f"app {app_label!r} is not part of this project ({app_path}).")
    job_name = f"{app.label}.{name}"
    if django_task:
        job_name = f"{app.name}.jobs.{name}.{name}"  # a Django task is known by its path
    module = app_path / "jobs" / f"{name}.py"
    if (app_path / "jobs.py").exists():
        raise ScaffoldError(f"{app_path / 'jobs.py'} exists: jobs/ cannot be a package there.")
    try:
        registry.get(job_name)
    except registry.UnknownJob:
        pass
    else:
        raise ScaffoldError(f"job {job_name!r} already exists ({registry.get(job_name).path}).")
    tests = (tests_dir or Path(settings.BASE_DIR) / "tests") / app.label
    test_file = tests / f"test_job_{name}.py"
    for path in (module, test_file):
        if path.exists():
            raise ScaffoldError(f"{path} already exists.")
    options = (["transactional=True"] if transactional else []) + limit_options
    doc = (TRANSACTIONAL_DOC.rstrip() if transactional else "") + (
        LIMITS_DOC if limit_options else ""
    )
    values = {
        "app": app.name,
        "name": name,
        "job_name": job_name,
        "decorator": _decorator(job_name, options),
        "doc": doc + "\n    " if doc else "",
    }
    files = {
        module: (DJANGO_TASK_TEMPLATE if django_task else JOB_TEMPLATE).format(**values),
        test_file: (DJANGO_TASK_TEST_TEMPLATE if django_task else TEST_TEMPLATE).format(**values),
    }
    if not (module.parent / "__init__.py").exists():
        files[module.parent / "__init__.py"] = PACKAGE_INIT
    if not (tests / "__init__.py").exists():
        files[tests / "__init__.py"] = ""
    return Scaffold(job_name=job_name, files=files)


def write(scaffold: Scaffold) -> list[Path]:
    written = []
    for path, content in scaffold.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x") as handle:  # never overwrite
            handle.write(content)
        written.append(path)
    return written


def _is_project_app(path: Path) -> bool:
    base = Path(settings.BASE_DIR).resolve()
    resolved = path.resolve()
    return resolved.is_relative_to(base) and "site-packages" not in resolved.parts
