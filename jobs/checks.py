"""System checks for a worker configuration that would misbehave (``manage.py check``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from jobs import health, registry, schedules


def _q_cluster() -> dict[str, Any]:
    return dict(getattr(settings, "Q_CLUSTER", {}) or {})


@register(Tags.compatibility)
def check_q_cluster(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    conf = _q_cluster()
    messages: list[CheckMessage] = []
    timeout = conf.get("timeout")
    retry = conf.get("retry", 60)
    if timeout is not None and retry is not None and int(retry) <= int(timeout):
        messages.append(
            Error(
                f"Q_CLUSTER['retry'] ({retry}) must be greater than Q_CLUSTER['timeout'] "
                f"({timeout}).",
                hint="Otherwise a task still running is handed out again and runs twice: set "
                "Q_RETRY to the timeout plus the longest wait in a worker's local queue "
                "(config/settings.py enforces timeout + 30 at least).",
                id="jobs.E001",
            )
        )
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
                hint="Results are written in batches by jobs.results and pruned in the "
                "background (JOBS_RESULTS_MAX_ROWS, JOBS_RESULTS_MAX_AGE_HOURS); a positive "
                "save_limit is ignored there, -1 keeps no result at all.",
                id="jobs.W007",
            )
        )
    for name in getattr(settings, "JOBS_RETIRED_ENV", []):
        messages.append(
            Warning(
                f"{name} is set in the environment but no longer read.",
                hint="Results are kept by default; set JOBS_RESULTS_MAX_ROWS and "
                "JOBS_RESULTS_MAX_AGE_HOURS for how many and how long, and unset it.",
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


PROJECT_BROKERS = ("jobs.broker.DatabaseBroker", "jobs.redis_broker.RedisBroker")


@register(Tags.compatibility)
def check_broker(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    conf = _q_cluster()
    broker = conf.get("broker_class")
    if broker not in PROJECT_BROKERS:
        # A warning: benchmarks/queue_settings.py runs stock django-q2 on purpose.
        return [
            Warning(
                f"Q_CLUSTER['broker_class'] is {broker!r}, not one of this project's brokers.",
                hint="django-q2's own brokers hand tasks out without worker nodes, retries, "
                "unique keys or pauses (Redis pops a task for good). Leave broker_class as "
                "config/settings.py sets it; QUEUE_REDIS_URL selects the Redis broker.",
                id="jobs.W006",
            )
        ]
    if broker == "jobs.redis_broker.RedisBroker" and not conf.get("redis"):
        return [
            Error(
                "Q_CLUSTER['broker_class'] is the Redis broker but Q_CLUSTER['redis'] is empty.",
                hint="Set QUEUE_REDIS_URL (redis://host:6379/0) on every web and worker process.",
                id="jobs.E004",
            )
        ]
    return []


@register(Tags.compatibility)
def check_jobs(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    conf = _q_cluster()
    messages: list[CheckMessage] = []
    retry = conf.get("retry", 60)
    # The project's brokers never hand a live node's task to another; django-q2's
    # ORM broker hands a task out again after Q_CLUSTER['retry'] whatever the job's timeout.
    orm_broker = not conf.get("broker_class") and not conf.get("redis") and conf.get("orm")
    if retry is not None and orm_broker:
        for spec in registry.all_jobs():
            if spec.timeout is not None and spec.timeout >= int(retry):
                messages.append(
                    Warning(
                        f"Job {spec.name!r} has timeout={spec.timeout}, not below "
                        f"Q_CLUSTER['retry'] ({retry}).",
                        hint="With this broker the task would be delivered again while it "
                        "runs. Lower the job's timeout or raise Q_RETRY.",
                        obj=spec.path,
                        id="jobs.W005",
                    )
                )
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
    for schedule in schedules.declared():
        try:
            registry.get(schedule.job)
        except registry.UnknownJob:
            messages.append(
                Warning(
                    f"Schedule {schedule.name!r} runs job {schedule.job!r}, which no installed app "
                    "declares: it is not synced.",
                    hint="Declare the job with @jobs.registry.job in its app's tasks.py, or "
                    "remove the schedule from jobs/schedules.py.",
                    id="jobs.W004",
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
