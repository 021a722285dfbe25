"""Every URL the project routes, with sample arguments, for sweeping security tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

# Reachable without signing in, on purpose (metrics: behind its own token or address
# list, tests/jobs/test_metrics.py).
PUBLIC_PREFIXES = ("accounts/", "admin/", "healthz", "metrics", "static/", "media/")


@dataclass(frozen=True)
class Route:
    route: str  # the pattern text, e.g. "tablos/<uuid:pk>/"
    name: str | None
    converters: dict[str, str]  # kwarg -> converter name

    def url(self, **values: object) -> str:
        """The path with every parameter filled from ``values`` or a harmless sample."""
        path = self.route
        for kwarg, conv in self.converters.items():
            value = values.get(kwarg, _sample(conv))
            path = path.replace(f"<{conv}:{kwarg}>", str(value)).replace(f"<{kwarg}>", str(value))
        return "/" + path


def _sample(converter: str) -> object:
    return {"uuid": uuid.uuid4(), "int": 1, "slug": "x", "path": "x"}.get(converter, "x")


def _converter_names(pattern: RoutePattern) -> dict[str, str]:
    names = {}
    for kwarg, conv in pattern.converters.items():
        names[kwarg] = type(conv).__name__.removesuffix("Converter").lower() or "str"
        if names[kwarg] == "string":
            names[kwarg] = "str"
    return names


def _walk(patterns: list, prefix: str, converters: dict[str, str]) -> Iterator[Route]:
    for p in patterns:
        if not isinstance(p.pattern, RoutePattern):
            continue  # regex routes (admin internals) are covered by the admin tests
        route = prefix + str(p.pattern)
        convs = {**converters, **_converter_names(p.pattern)}
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, route, convs)
        elif isinstance(p, URLPattern):
            yield Route(route=route, name=p.name, converters=convs)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns, "", {}))


def private_routes() -> list[Route]:
    """Routes that must require a signed-in user."""
    return [r for r in all_routes() if r.route and not r.route.startswith(PUBLIC_PREFIXES)]
