"""structlog for the whole project: web, worker and management commands.

structlog's own loggers and the standard library's (Django, django-q2,
botocore...) end in one handler with one formatter, so every line has the same
shape: readable key=value lines in development, one JSON object per line when
``LOG_FORMAT=json``. Context bound with ``structlog.contextvars`` (the request
id from django-structlog, the task id from the worker, ``jobs.engine.worker``) appears on every
line, including lines written through the standard library. With tracing on
(``OTEL_TRACES_EXPORTER``), a line written while a span is active carries its
``trace_id`` and ``span_id``; off, that processor is not in the chain at all.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from opentelemetry import trace


def _drop_runserver_noise(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """runserver passes its socket and a second timestamp as extras; keep the status only."""
    if event.get("logger") == "django.server":
        event.pop("request", None)
        event.pop("server_time", None)
    return event


def add_trace_ids(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """The active span's ids (W3C hex), to find a log line's trace and the trace's lines."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
        event.setdefault("span_id", trace.format_span_id(span_context.span_id))
    return event


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    _drop_runserver_noise,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def build_logging(*, json: bool, level: str, trace_ids: bool = False) -> dict[str, Any]:
    """Configure structlog and return the ``LOGGING`` dict for Django."""
    shared = [*SHARED_PROCESSORS, add_trace_ids] if trace_ids else SHARED_PROCESSORS
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
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
                "foreign_pre_chain": shared,
            }
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structlog"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own handlers would print a second, unformatted copy.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": [], "level": level, "propagate": True},
            # django-q2 installs its own handler unless the logger has one. What it
            # still logs at INFO here is one "Enqueued" line per async_task(); the
            # worker's own "task finished" and "task failed" events say more.
            "django-q": {"handlers": ["console"], "level": "WARNING", "propagate": False},
            "botocore": {"level": "WARNING"},
            "boto3": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


__all__ = ["build_logging", "logging"]
