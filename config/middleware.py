"""Request middleware of the project's own."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

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


class RejectNulInAddress:
    """A NUL byte in the path or query string is a 400 before any view runs.

    No page takes one, and PostgreSQL refuses it in a text parameter (a filter
    value like ``?func=%00`` would end as a 500). Form bodies are checked by the
    forms themselves (Django's CharField refuses NUL); file bodies may hold any byte.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.GET.lists()
        if "\x00" in request.path or any("\x00" in "".join([k, *vs]) for k, vs in query):
            return HttpResponseBadRequest(
                "Bad request: the address contains a NUL byte.", content_type="text/plain"
            )
        return self.get_response(request)
