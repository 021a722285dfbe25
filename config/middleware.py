"""Request middleware of the project's own."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# What proxies and load balancers send (UUIDs, hex, "Root=1-..." style ids); anything
# else (markup, quotes, spaces, control bytes, huge values) is not an id.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}$")
_ID_HEADERS = ("HTTP_X_REQUEST_ID", "HTTP_X_CORRELATION_ID")


class RequestIdGuard:
    """Drop an upstream ``X-Request-ID`` / ``X-Correlation-ID`` that is not a plain id.

    django-structlog binds the header's value as ``request_id`` on every log line;
    without it, it makes a fresh UUID. So a value like ``abc</script><x>`` never
    reaches the logs (or a log viewer that renders them).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name in _ID_HEADERS:
            value = request.META.get(name)
            if value is not None and not _REQUEST_ID.fullmatch(value):
                del request.META[name]
        return self.get_response(request)
