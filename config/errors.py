"""Error pages that tell the user what happened and what to do."""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.views.defaults import server_error as django_server_error

# What Django raises when the database cannot be reached or drops the connection
# (refused, restarting, reset); a bad query is a ProgrammingError/DataError instead.
DATABASE_OUTAGE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 30


def is_database_outage(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, DATABASE_OUTAGE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a database outage is a short 503 that says to try again.

    Django calls this inside its ``except`` block, so the exception is in
    ``sys.exc_info()``. The 503 page is rendered without the request: no context
    processor may touch the session or the user, which live in the database.
    """
    if not is_database_outage(sys.exc_info()[1]):
        return django_server_error(request)
    body = loader.get_template("503.html").render({"retry_after": RETRY_AFTER_SECONDS})
    response = HttpResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response
