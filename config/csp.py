"""The site's Content Security Policy with a few sources changed, for one response.

Views that need a narrower or wider policy than ``SECURE_CSP`` (the file previews)
set the header themselves with :func:`policy`; Django's CSP middleware leaves a
response that already has one alone.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.csp import CSP, build_policy

__all__ = ["HEADER", "SELF", "policy"]

HEADER = str(CSP.HEADER_ENFORCE)
SELF = str(CSP.SELF)


def policy(
    *, add: dict[str, list[str]] | None = None, replace: dict[str, list[str]] | None = None
) -> str:
    """The site's policy, with ``add`` sources appended to their directives (a directive
    the site does not set starts empty) and ``replace`` directives set as given."""
    site: dict[str, Any] = settings.SECURE_CSP
    config = {directive: list(sources) for directive, sources in site.items()}
    for directive, sources in (add or {}).items():
        config[directive] = [*config.get(directive, []), *sources]
    config.update(replace or {})
    return str(build_policy(config))
