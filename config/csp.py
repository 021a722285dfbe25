"""The site's Content Security Policy with a few sources changed, for one response.

Views that need a narrower or wider policy than ``CONTENT_SECURITY_POLICY`` (the file
previews) set the header themselves with :func:`policy`; the middleware leaves a
response that already has one alone. The one module to change when the policy's
library changes (Django 6 has its own, ``SECURE_CSP``).
"""

from __future__ import annotations

from csp.constants import HEADER, SELF
from csp.utils import build_policy

__all__ = ["HEADER", "SELF", "policy"]


def policy(
    *, add: dict[str, list[str]] | None = None, replace: dict[str, list[str]] | None = None
) -> str:
    """The site's policy, with ``add`` sources appended to their directives (a directive
    the site does not set starts empty) and ``replace`` directives set as given."""
    return build_policy(update=add, replace=replace)
