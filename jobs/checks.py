"""System checks for a worker configuration that would misbehave (``manage.py check``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from jobs import health


def _q_cluster() -> dict[str, Any]:
    return dict(getattr(settings, "Q_CLUSTER", {}) or {})


# What replaced each variable of config/settings.py's JOBS_RETIRED_ENV.
RETIRED_ENV_HINTS = {
    "Q_SAVE_LIMIT": "Results are kept by default; set JOBS_RESULTS_MAX_ROWS and "
    "JOBS_RESULTS_MAX_AGE_HOURS for how many and how long, and unset it.",
    "QUEUE_REDIS_URL": "The queue lives in the database now (the jobs.Job table, on "
    "DATABASE_URL); Redis is only the shared cache (CACHE_REDIS_URL). Unset it.",
    "Q_RETRY": "A claimed task belongs to its worker node until that node stops or is "
    "declared dead (JOBS_NODE_DEAD_AFTER_SECONDS); there is no redelivery delay. Unset it.",
}


@register(Tags.compatibility)
def check_q_cluster(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    conf = _q_cluster()
    messages: list[CheckMessage] = []
    if conf.get("max_attempts", 0) != 0 or conf.get("ack_failures", False):
        messages.append(
            Error(
                "Q_CLUSTER['max_attempts'] must be 0 and Q_CLUSTER['ack_failures'] False.",
                hint="Retries, backoff and dead tasks are handled by jobs.failures; django-q2's "
                "own counting would acknowledge or drop tasks behind its back. Set "
                "JOBS_DEFAULT_MAX_ATTEMPTS or a job's max_attempts instead.",
                id="jobs.E002",
            )
        )
    orm = conf.get("orm")
    if orm is not None and orm != "default":
        messages.append(
            Error(
                f"Q_CLUSTER['orm'] is {orm!r}; the queue must live on the 'default' database.",
                hint="Transactional enqueue and the scheduler's row lock need the queue on the "
                "same connection as the application data (django-q2 issue #293).",
                id="jobs.E003",
            )
        )
    if conf.get("sync") and not settings.DEBUG:
        messages.append(
            Warning(
                "Q_CLUSTER['sync'] is on with DEBUG off: every task runs inside the request.",
                hint="Sync mode is for tests. Remove it from production settings.",
                id="jobs.W001",
            )
        )
    if conf.get("save_limit", 250) != 0:
        messages.append(
            Warning(
                f"Q_CLUSTER['save_limit'] is {conf.get('save_limit', 250)}, not 0.",
                hint="Results are written in batches by jobs.engine.results and pruned in the "
                "background (JOBS_RESULTS_MAX_ROWS, JOBS_RESULTS_MAX_AGE_HOURS); a positive "
                "save_limit is ignored there, -1 keeps no result at all.",
                id="jobs.W007",
            )
        )
    for name in getattr(settings, "JOBS_RETIRED_ENV", []):
        messages.append(
            Warning(
                f"{name} is set in the environment but no longer read.",
                hint=RETIRED_ENV_HINTS.get(name, "Unset it."),
                id="jobs.W008",
            )
        )
    if conf.get("catch_up", True):
        messages.append(
            Warning(
                "Q_CLUSTER['catch_up'] is on: after downtime every missed schedule run is "
                "replayed, one per scheduler pass.",
                hint="Set 'catch_up': False; heartbeat and orphan cleanup need only the next run.",
                id="jobs.W002",
            )
        )
    return messages


PROJECT_BROKER = "jobs.engine.broker.DatabaseBroker"


@register(Tags.compatibility)
def check_broker(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    broker = _q_cluster().get("broker_class")
    if broker != PROJECT_BROKER:
        # A warning: benchmarks/queue_settings.py runs stock django-q2 on purpose.
        return [
            Warning(
                f"Q_CLUSTER['broker_class'] is {broker!r}, not this project's broker.",
                hint="qcluster runs the tasks of the jobs.Job table only: what async_task() "
                "puts in another broker is never run by it. Leave broker_class as "
                f"config/settings.py sets it ({PROJECT_BROKER}).",
                id="jobs.W006",
            )
        ]
    return []


@register(Tags.compatibility)
def check_jobs(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    interval = int(getattr(settings, "HEARTBEAT_INTERVAL_SECONDS", 60))
    if interval % 60:
        messages.append(
            Warning(
                f"HEARTBEAT_INTERVAL_SECONDS={interval} is not a whole number of minutes; "
                f"the heartbeat runs every {health.heartbeat_interval_seconds()} s.",
                hint="django-q2 schedules run in whole minutes.",
                id="jobs.W003",
            )
        )
    for queue, limit in dict(getattr(settings, "JOBS_QUEUE_CONCURRENCY", {})).items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            messages.append(
                Error(
                    f"JOBS_QUEUE_CONCURRENCY gives the queue {queue!r} the limit {limit!r}: "
                    "its workers would claim nothing.",
                    hint="Give each queue a whole number of tasks from 1 up "
                    "(JOBS_QUEUE_CONCURRENCY=reports=4,default=20), or leave it out.",
                    id="jobs.E004",
                )
            )
    return messages


# Django's own Tasks backends that run nothing in the background: for tests and development.
INLINE_TASK_BACKENDS = {
    "django.tasks.backends.immediate.ImmediateBackend": "runs every task inside the request",
    "django.tasks.backends.dummy.DummyBackend": "stores tasks in memory and never runs them",
}


@register(Tags.compatibility)
def check_task_backends(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Django's Tasks (``TASKS``): a test backend left in production. Read from the
    settings only, so the check holds whichever Django this is."""
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    for alias, conf in (getattr(settings, "TASKS", None) or {}).items():
        backend = str((conf or {}).get("BACKEND", ""))
        if backend in INLINE_TASK_BACKENDS:
            messages.append(
                Warning(
                    f"TASKS[{alias!r}] uses {backend.rpartition('.')[2]} with DEBUG off: it "
                    f"{INLINE_TASK_BACKENDS[backend]}.",
                    hint="Use 'jobs.django_tasks.TabloBackend' (config/settings.py does): "
                    "@task functions then run on qcluster with retries and results.",
                    id="jobs.W203",
                )
            )
    return messages


@register(Tags.security)
def check_metrics_access(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    import ipaddress

    messages: list[CheckMessage] = []
    for entry in getattr(settings, "METRICS_ALLOWED_IPS", []):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            messages.append(
                Error(
                    f"METRICS_ALLOWED_IPS has {entry!r}, which is not an address or network.",
                    hint="List addresses or CIDR networks, comma-separated "
                    "(METRICS_ALLOWED_IPS=127.0.0.1,10.0.0.0/8).",
                    id="jobs.E101",
                )
            )
    return messages
