"""OpenTelemetry: a request's trace carried into the tasks it enqueues, and into their runs.

Off unless the standard ``OTEL_*`` variables name an exporter (``settings.TRACING_ENABLED``,
read in ``config/env.py``); only then does ``JobsConfig.ready`` import this module and call
``connect()``. Then:

* the SDK is set up once per process, in that process, from the ``OTEL_*`` variables: a
  web process at its first request, each worker process of ``qcluster`` as it starts,
  after the fork (no exporter thread or connection is shared between processes);
* Django requests get a SERVER span (opentelemetry-instrumentation-django);
* every enqueue (django-q2's ``pre_enqueue``: ``async_task``, ``registry.enqueue`` and
  ``enqueue_many``, the scheduler, a chain's next link) makes a PRODUCER span
  ``publish <job>`` under the current span and stores its W3C context in the task's
  package (``trace``: ``traceparent``, ``tracestate``); the queue row keeps it, through
  every retry;
* a worker runs each attempt in a CONSUMER span ``process <job>`` (from ``pre_execute`` to
  ``post_execute_in_worker``): a child of the stored context on the first attempt, and on
  a later attempt a new trace that links to it (the messaging conventions' advice); a
  failed attempt records its exception and sets the status to ERROR.

Off, nothing here is imported or connected: the engine's path is the same as without it.
"""

from __future__ import annotations

import multiprocessing.util
import os
from importlib.metadata import entry_points
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started
from django_q.conf import Conf
from django_q.signals import post_execute_in_worker, post_spawn, pre_enqueue, pre_execute
from django_q.utils import get_func_repr
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from jobs.engine import context, registry

# The task package's key for the enqueue's W3C context.
PACKAGE_KEY = "trace"
# A finished link's own span context, for its chain's next link (see publish()).
_RUN_KEY = "trace_run"
SYSTEM = "tablo"
DEFAULT_SERVICE_NAME = "tablo"

tracer = trace.get_tracer("jobs.tracing")

_started_in: int | None = None
# Attempts running in this process: id(task package) -> (span, context token).
_open: dict[int, tuple[trace.Span, object]] = {}


# -- the SDK, once per process --------------------------------------------------------------
def start_process(provider: TracerProvider | None = None) -> None:
    """Set up the SDK in this process, once; a forked process sets up its own."""
    global _started_in
    if _started_in == os.getpid():
        return
    _started_in = os.getpid()
    if provider is None:
        provider = build_provider()
        # A worker process ends through multiprocessing, which skips atexit; its
        # finalizers run in every process, so the last spans are exported either way.
        multiprocessing.util.Finalize(None, provider.shutdown, exitpriority=100)
    trace.set_tracer_provider(provider)


def build_provider() -> TracerProvider:
    """A provider exporting to ``settings.TRACE_EXPORTERS``, configured by ``OTEL_*``."""
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in settings.TRACE_EXPORTERS:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def _exporter(name: str) -> SpanExporter:
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise ImproperlyConfigured(f"the span exporter {name!r} is not installed")
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


def connect() -> None:
    """Trace requests, enqueues and runs in every process of this site (idempotent)."""
    instrumentor = DjangoInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    # A web process at its first request; a worker process of qcluster as it starts.
    request_started.connect(_start, dispatch_uid="jobs.tracing.web")
    post_spawn.connect(_start, dispatch_uid="jobs.tracing.worker")
    pre_enqueue.connect(publish, dispatch_uid="jobs.tracing.publish")
    pre_execute.connect(start_run, dispatch_uid="jobs.tracing.start_run")
    post_execute_in_worker.connect(end_run, dispatch_uid="jobs.tracing.end_run")


def disconnect() -> None:
    """Undo ``connect()`` (tests)."""
    instrumentor = DjangoInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    request_started.disconnect(dispatch_uid="jobs.tracing.web")
    post_spawn.disconnect(dispatch_uid="jobs.tracing.worker")
    pre_enqueue.disconnect(dispatch_uid="jobs.tracing.publish")
    pre_execute.disconnect(dispatch_uid="jobs.tracing.start_run")
    post_execute_in_worker.disconnect(dispatch_uid="jobs.tracing.end_run")


def _start(sender: Any = None, **_: Any) -> None:
    start_process()


# -- enqueue: a PRODUCER span, its context stored with the task -------------------------------
def publish(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    """``pre_enqueue`` receiver: the ``publish`` span, and its context in the package."""
    if task is None:
        return
    parent = None
    previous = context.following()
    if previous is not None and not trace.get_current_span().get_span_context().is_valid:
        # A chain's next link, enqueued after the previous link's span ended.
        parent = propagate.extract(previous.get(_RUN_KEY) or {})
    job = job_name(task)
    queue = str(task.get("cluster") or Conf.CLUSTER_NAME or "")
    span = tracer.start_span(
        f"publish {job}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            **_messaging("publish", "send", queue=queue, task=task),
            "tablo.job": job,
            "tablo.queue": queue,
        },
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    span.end()
    if carrier:  # none without a valid span: nothing to carry
        task[PACKAGE_KEY] = carrier


# -- a run: a CONSUMER span around the attempt ---------------------------------------------
def start_run(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    """``pre_execute`` receiver: open the attempt's ``process`` span and make it current."""
    if task is None:
        return
    attempt = int(task.get("attempt") or 1)
    parent: otel_context.Context | None = None
    links: list[Link] = []
    carried = task.get(PACKAGE_KEY)
    if isinstance(carried, dict):
        enqueued = propagate.extract(carried)
        if attempt <= 1:
            parent = enqueued
        else:
            # A retry is not part of the enqueue's operation: its own trace, linked.
            parent = otel_context.Context()
            linked = trace.get_current_span(enqueued).get_span_context()
            if linked.is_valid:
                links.append(Link(linked))
    run = context.running()
    queue = str(task.get("cluster") or (run.cluster if run is not None else "") or "")
    job = str(task.get("job_name") or "") or job_name(task)
    attributes: dict[str, Any] = {
        **_messaging("process", "process", queue=queue, task=task),
        "tablo.job": job,
        "tablo.attempt": attempt,
        "tablo.queue": queue,
    }
    node = context.current_node_id()
    if node is not None:
        attributes["tablo.node"] = node
    span = tracer.start_span(
        f"process {job}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
    )
    _open[id(task)] = (span, otel_context.attach(trace.set_span_in_context(span)))


def end_run(
    sender: Any = None,
    task: dict[str, Any] | None = None,
    error: BaseException | None = None,
    **_: Any,
) -> None:
    """``post_execute_in_worker`` receiver: the outcome on the span; the span ends."""
    opened = _open.pop(id(task), None) if task is not None else None
    if task is None or opened is None:
        return
    span, token = opened
    try:
        if task.get("success"):
            if task.get("chain") and span.get_span_context().is_valid:
                carrier: dict[str, str] = {}
                propagate.inject(carrier, context=trace.set_span_in_context(span))
                task[_RUN_KEY] = carrier
        else:
            error_type = _type_name(error) if error is not None else "unknown"
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            if error is not None:
                span.record_exception(error, escaped=True)
    finally:
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]


# -- helpers ----------------------------------------------------------------------------------
def job_name(task: dict[str, Any]) -> str:
    """The registered job's name, else the function's dotted path."""
    func = task.get("func")
    path = func if isinstance(func, str) else get_func_repr(func)
    spec = registry.for_func(path)
    return spec.name if spec is not None else str(path)


def _type_name(error: BaseException) -> str:
    """``RuntimeError`` for builtins, ``pkg.module.Error`` for the rest (``error.type``)."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _messaging(operation: str, kind: str, *, queue: str, task: dict[str, Any]) -> dict[str, Any]:
    """Messaging semantic conventions: the system, the operation, the queue and message id."""
    return {
        "messaging.system": SYSTEM,
        "messaging.operation": operation,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.destination.name": queue,
        "messaging.message.id": str(task.get("id") or ""),
    }
