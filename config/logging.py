"""structlog for the whole project: web, worker and management commands.

structlog's own loggers and the standard library's (Django, django-q2,
botocore...) end in one handler with one formatter, so every line has the same
shape: readable key=value lines in development, one JSON object per line when
``LOG_FORMAT=json``. Context bound with ``structlog.contextvars`` (the request
id from django-structlog, the task id from the worker runtime) appears on every
line, including lines written through the standard library.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog


def _drop_runserver_noise(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """runserver passes its socket and a second timestamp as extras; keep the status only."""
    if event.get("logger") == "django.server":
        event.pop("request", None)
        event.pop("server_time", None)
    return event


class DropPerTaskLines(logging.Filter):
    """Drop django-q2's per-task lines; the runtime and the failure hook log each task.

    django-q2 writes "Enqueued [queue] id" on every ``async_task()``, then
    "Process-1 processing <name> '<func>'" and "Processed '<func>' (<name>)" for
    every run. The worker runtime's ``task started`` / ``task finished`` events
    (jobs.engine.runtime) carry the same facts with the task id, job, attempt and
    duration, so these lines only double the log volume; rendering them through
    the structlog pipeline was most of the cost of an ``async_task()`` call
    above its INSERT. Its per-task "Failed '<func>' (<name>) - <error> : <traceback>"
    error goes too: the failure hook (jobs.failures.hook) logs one ``task failed``
    event for it, with the same traceback and the retry decision. Other warnings
    and errors and the cluster's own start/stop lines pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        message = record.msg
        if record.levelno == logging.ERROR:
            return not message.startswith("Failed '")
        if record.levelno != logging.INFO:
            return True
        return not (message.startswith(("Enqueued [", "Processed '")) or " processing " in message)


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    _drop_runserver_noise,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def build_logging(*, json: bool, level: str) -> dict[str, Any]:
    """Configure structlog and return the ``LOGGING`` dict for Django."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    if json:
        final: list[Any] = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final = [structlog.dev.ConsoleRenderer(colors=False)]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *final,
                ],
                "foreign_pre_chain": SHARED_PROCESSORS,
            }
        },
        "filters": {"drop_per_task_lines": {"()": DropPerTaskLines}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structlog"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own handlers would print a second, unformatted copy.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": [], "level": level, "propagate": True},
            # django-q2 installs its own handler unless the logger has one.
            "django-q": {
                "handlers": ["console"],
                "level": level,
                "propagate": False,
                "filters": ["drop_per_task_lines"],
            },
            "botocore": {"level": "WARNING"},
            "boto3": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


__all__ = ["build_logging", "logging"]
