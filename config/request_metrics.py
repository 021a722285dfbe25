"""The web app's request metrics for /metrics (``jobs.metrics`` exposes them).

These replace django-prometheus's middleware, which has no release for Django 6.1; the
metric names and labels are the ones it used, so dashboards built on them keep working.
They live in process memory (prometheus_client's default registry), merged across web
processes when ``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus_client reads it itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from prometheus_client import Counter, Histogram

# django-prometheus's default buckets (seconds; prometheus_client adds +Inf).
LATENCY_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75),
    *(1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0),
)
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")
)
UNNAMED_VIEW = "<unnamed view>"

latency = Histogram(
    "django_http_requests_latency_including_middlewares_seconds",
    "Histogram of requests processing time (including middleware processing time).",
    buckets=LATENCY_BUCKETS,
)
latency_by_view_method = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Histogram of request processing time labelled by view.",
    ["view", "method"],
    buckets=LATENCY_BUCKETS,
)
requests_by_method = Counter(
    "django_http_requests_total_by_method", "Count of requests by method.", ["method"]
)
requests_by_transport = Counter(
    "django_http_requests_total_by_transport", "Count of requests by transport.", ["transport"]
)
requests_by_view_transport_method = Counter(
    "django_http_requests_total_by_view_transport_method",
    "Count of requests by view, transport, method.",
    ["view", "transport", "method"],
)
responses_by_status = Counter(
    "django_http_responses_total_by_status", "Count of responses by status.", ["status"]
)
responses_by_status_view_method = Counter(
    "django_http_responses_total_by_status_view_method",
    "Count of responses by status, view, method.",
    ["status", "view", "method"],
)
exceptions_by_type = Counter(
    "django_http_exceptions_total_by_type", "Count of exceptions by object type.", ["type"]
)
exceptions_by_view = Counter(
    "django_http_exceptions_total_by_view", "Count of exceptions by view.", ["view"]
)


def _method(request: HttpRequest) -> str:
    # Any string a client sends would otherwise become a label value of its own.
    return request.method if request.method in _METHODS else "<invalid method>"


def _view(request: HttpRequest) -> str | None:
    """The URL name of the view that served ``request``; None when no URL matched."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    return match.view_name or UNNAMED_VIEW


class RequestMetrics:
    """Counts and times every request, first in MIDDLEWARE so the time includes the others."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        method = _method(request)
        transport = "https" if request.is_secure() else "http"
        requests_by_method.labels(method=method).inc()
        requests_by_transport.labels(transport=transport).inc()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started

        view = _view(request)
        if view is not None:
            requests_by_view_transport_method.labels(
                view=view, transport=transport, method=method
            ).inc()
        status = str(response.status_code)
        responses_by_status.labels(status=status).inc()
        responses_by_status_view_method.labels(
            status=status, view=view or UNNAMED_VIEW, method=method
        ).inc()
        latency.observe(elapsed)
        latency_by_view_method.labels(view=view or UNNAMED_VIEW, method=method).observe(elapsed)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        """A view raised: count it (Django then turns it into a response as usual)."""
        exceptions_by_type.labels(type=type(exception).__name__).inc()
        exceptions_by_view.labels(view=_view(request) or UNNAMED_VIEW).inc()
