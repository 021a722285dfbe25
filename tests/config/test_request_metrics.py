"""The web app's request metrics: counted by view, method, status and exception, timed."""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path
from prometheus_client import REGISTRY


class Boom(Exception):
    pass


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def boom(request: HttpRequest) -> HttpResponse:
    raise Boom


# The project's pages too: the 404 page links to them.
urlpatterns = [
    path("ok/", ok, name="ok"),
    path("boom/", boom, name="boom"),
    path("", include("config.urls")),
]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_request_is_counted_by_view_method_and_status_and_timed() -> None:
    by_view = {"view": "ok", "transport": "http", "method": "POST"}
    timed = {"view": "ok", "method": "POST"}
    before = (
        value("django_http_requests_total_by_view_transport_method_total", **by_view),
        value("django_http_requests_total_by_method_total", method="POST"),
        value("django_http_responses_total_by_status_view_method_total", status="200", **timed),
        value("django_http_requests_latency_seconds_by_view_method_count", **timed),
        value("django_http_requests_latency_including_middlewares_seconds_count"),
    )
    Client().post("/ok/")
    after = (
        value("django_http_requests_total_by_view_transport_method_total", **by_view),
        value("django_http_requests_total_by_method_total", method="POST"),
        value("django_http_responses_total_by_status_view_method_total", status="200", **timed),
        value("django_http_requests_latency_seconds_by_view_method_count", **timed),
        value("django_http_requests_latency_including_middlewares_seconds_count"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1, 1]


def test_an_unknown_address_counts_its_status_under_no_view() -> None:
    unnamed = {"status": "404", "view": "<unnamed view>", "method": "GET"}
    before = value("django_http_responses_total_by_status_view_method_total", **unnamed)
    total_before = value("django_http_responses_total_by_status_total", status="404")
    assert Client().get("/nowhere/").status_code == 404
    assert value("django_http_responses_total_by_status_view_method_total", **unnamed) == (
        before + 1
    )
    assert value("django_http_responses_total_by_status_total", status="404") == total_before + 1


def test_a_view_that_raises_is_counted_by_exception_type_and_view() -> None:
    by_type = value("django_http_exceptions_total_by_type_total", type="Boom")
    by_view = value("django_http_exceptions_total_by_view_total", view="boom")
    answered = value(
        "django_http_responses_total_by_status_view_method_total",
        status="500", view="boom", method="GET",
    )  # fmt: skip
    assert Client(raise_request_exception=False).get("/boom/").status_code == 500
    assert value("django_http_exceptions_total_by_type_total", type="Boom") == by_type + 1
    assert value("django_http_exceptions_total_by_view_total", view="boom") == by_view + 1
    assert value(
        "django_http_responses_total_by_status_view_method_total",
        status="500", view="boom", method="GET",
    ) == answered + 1  # fmt: skip


def test_a_made_up_method_does_not_become_a_label_of_its_own() -> None:
    before = value("django_http_requests_total_by_method_total", method="<invalid method>")
    Client().generic("BREW", "/ok/")
    assert value("django_http_requests_total_by_method_total", method="BREW") == 0
    assert (
        value("django_http_requests_total_by_method_total", method="<invalid method>") == before + 1
    )
