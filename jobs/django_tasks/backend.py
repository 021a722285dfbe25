"""``TabloBackend``: Django's Tasks backend on Tablo's queue engine.

``enqueue`` writes one ``jobs.Job`` row, on the caller's connection and inside its
transaction, through the engine's own enqueue (``backend.enqueue``): the row
commits or rolls back with the caller's data. The task is registered with the engine
(``registry.job``) under its module path, with its policy (``options``), when Django
validates it. A worker runs it through ``Runner``; ``get_result`` reads the rows back
(``results``).
"""

from __future__ import annotations

from typing import Any, ParamSpec, TypeVar, cast

from django.core.checks import CheckMessage, Error, Warning
from django.tasks import Task, TaskResult, task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished
from django.utils.json import normalize_json
from django_q.conf import Conf
from django_q.signals import post_execute

from jobs.django_tasks import options, results
from jobs.django_tasks.runner import Runner
from jobs.django_tasks.tasks import TabloTask, declared_policy
from jobs.engine import backend as engine
from jobs.engine import registry

DEFAULT_QUEUE = "default"
P = ParamSpec("P")
R = TypeVar("R")


class TabloBackend(BaseTaskBackend):
    task_class = TabloTask

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.options_error = ""
        try:
            self.policies = options.parse(self.options)
        except options.OptionsError as exc:
            # Reported by check() (jobs.E201) and by enqueue; a task module still imports.
            self.options_error = str(exc)
            self.policies = options.Options(defaults={}, table={})
        self._declared: dict[str, dict[str, Any]] = {}
        post_execute.connect(announce_finished, dispatch_uid="jobs.django_tasks.announce_finished")

    # -- Django's backend API --------------------------------------------------------
    def validate_task(self, task: Task[..., Any]) -> None:
        super().validate_task(task)
        self._register(task)

    def enqueue(
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        if self.options_error:
            raise InvalidTaskBackend(f"TASKS[{self.alias!r}]: {self.options_error}")
        self.validate_task(task)
        # Stored as JSON normalises them: the function gets what get_result reports.
        args, kwargs = (
            cast("list[Any]", normalize_json(args)),
            cast("dict[str, Any]", normalize_json(kwargs)),
        )
        package = registry.build_package(registry.get(task.module_path), args, kwargs)
        enqueued_at = package["started"]
        queue = tablo_queue(task.queue_name)
        package.pop("cached", None)  # a Django task's result is always a row
        package.update(
            {
                "func": Runner(task.module_path),
                "priority": task.priority,
                "save": True,
                "cluster": queue,
                results.META: results.meta(
                    backend=self.alias,
                    queue_name=task.queue_name,
                    priority=task.priority,
                    run_after=task.run_after,
                    enqueued_at=enqueued_at,
                ),
            }
        )
        if task.run_after is not None:
            package["run_at"] = task.run_after
        [task_id] = engine.enqueue([package], queue=queue)
        if task_id != package["id"]:
            # A unique task whose key is already queued or running: that task's result.
            return cast("TaskResult[P, R]", self.get_result(task_id))
        result = results.ready(
            task,
            result_id=task_id,
            args=args,
            kwargs=kwargs,
            enqueued_at=enqueued_at,
            backend=self,
        )
        task_enqueued.send(type(self), task_result=result)
        return cast("TaskResult[P, R]", result)

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        return results.load(str(result_id), backend=self)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        messages: list[CheckMessage] = []
        where = f"TASKS[{self.alias!r}]"
        if self.options_error:
            messages.append(
                Error(
                    f"{where}['OPTIONS'] is invalid: {self.options_error}",
                    hint="See docs/django_tasks.md for the options and their forms.",
                    id="jobs.E201",
                )
            )
        known = known_queues()
        for name in sorted(self.queues):
            queue = tablo_queue(name)
            if queue not in known:
                messages.append(
                    Warning(
                        f"{where}['QUEUES'] names {name!r}: Tablo queue {queue!r}, which is "
                        f"neither the site's queue ({tablo_queue(DEFAULT_QUEUE)!r}) nor the "
                        "cluster of a declared job.",
                        hint=f"Its tasks wait until a worker runs with Q_CLUSTER_NAME={queue}; "
                        "start one, or remove the name (a typo?).",
                        id="jobs.W201",
                    )
                )
        for path in sorted(self.policies.table):
            try:
                results.declared_task(path)
            except TaskResultDoesNotExist:
                messages.append(
                    Warning(
                        f"{where}['OPTIONS']['tasks'] has an entry for {path!r}, "
                        "which is not a @task.",
                        hint="The key is the task's module path, e.g. 'files.tasks.send_digest'.",
                        id="jobs.W202",
                    )
                )
        return messages

    # -- the engine's side -----------------------------------------------------------
    def _register(self, task: Task[..., Any]) -> None:
        """Declare the task to the engine under its module path, with its policy."""
        path = task.module_path
        declared = declared_policy(task)
        if self._declared.get(path) == declared and registry.for_func(path) is not None:
            return
        try:
            options.check_declared(declared, path=path)
        except options.OptionsError as exc:
            raise InvalidTask(str(exc)) from None
        policy = options.policy(self.policies, path=path, declared=declared)
        registry.job(
            path,
            max_attempts=policy.max_attempts,
            timeout=policy.timeout,
            backoff=policy.backoff,
            unique=policy.unique,
        )(task.func)
        self._declared[path] = declared


def tablo_queue(queue_name: str) -> str:
    """Django's queue name -> Tablo's queue: ``default`` is the site's (``Q_SITE_NAME``, in
    any process: a worker of another queue enqueues there too), others their own name."""
    if queue_name == DEFAULT_QUEUE:
        return str(Conf.PREFIX or DEFAULT_QUEUE)
    return queue_name


def known_queues() -> set[str]:
    """The queues some worker is expected to serve: the site's, and declared jobs' clusters."""
    return {tablo_queue(DEFAULT_QUEUE)} | {s.cluster for s in registry.all_jobs() if s.cluster}


def announce_finished(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    """``post_execute`` receiver: Django's ``task_finished``, once an attempt's outcome is
    written, with the task's status then (SUCCESSFUL; FAILED when it is dead; READY when
    a retry is due)."""
    if not task or not task.get(results.META):
        return
    backend = task_backends[task[results.META]["backend"]]
    if task.get("success") and int(task.get("attempt") or 1) == 1:
        result = results.first_success(task, backend=backend)
    else:
        try:
            result = backend.get_result(task["id"])
        except TaskResultDoesNotExist:
            return  # pruned or discarded meanwhile
    task_finished.send(type(backend), task_result=result)
