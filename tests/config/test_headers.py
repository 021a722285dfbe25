"""Response headers: Content-Security-Policy everywhere, no server banner, and only
plain request ids from upstream reach the logs."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

import pytest
from django.test import Client

from tests.reliability.support import clean_env
from tests.reliability.webserver import WebServer

# The whole policy, directive by directive (the header's order is not part of it).
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    # The admin sets a few style attributes; no inline <style> or <script> anywhere.
    "style-src-attr": "'unsafe-inline'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def directives(header: str) -> dict[str, str]:
    return dict(part.strip().partition(" ")[::2] for part in header.split(";"))


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/healthz", "/nowhere"])
def test_every_response_carries_the_content_security_policy(path: str) -> None:
    response = Client().get(path)
    assert directives(response.headers["Content-Security-Policy"]) == POLICY
    assert "Content-Security-Policy-Report-Only" not in response.headers


def request_ids(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {
        r.msg["request_id"]
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "request_started"
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sent",
    ["abc</script><x>", "a b", "x" * 129, "-starts-with-dash", "id\x1b[31m", "", "req\n"],
)
def test_a_request_id_that_is_not_a_plain_id_is_replaced(sent: str, caplog) -> None:
    caplog.set_level("INFO")
    Client().get("/healthz", HTTP_X_REQUEST_ID=sent)
    [logged] = request_ids(caplog)
    assert logged != sent
    assert uuid.UUID(logged)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sent", ["req-123", "3f2a9c1e-7b1d-4c8e-9a0b-2d3e4f5a6b7c", "Root=1-67891233-abcdef012345"]
)
def test_a_plain_upstream_request_id_is_kept(sent: str, caplog) -> None:
    caplog.set_level("INFO")
    Client().get("/healthz", HTTP_X_REQUEST_ID=sent)
    assert request_ids(caplog) == {sent}


@pytest.mark.slow
def test_gunicorn_does_not_announce_itself(tmp_path: Path) -> None:
    env = clean_env(
        DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3"
    )
    web = WebServer(tmp_path / "web.log", env, workers=1, threads=1).start()
    try:
        with urllib.request.urlopen(f"{web.url}/accounts/login/", timeout=10) as response:  # noqa: S310
            server = response.headers.get("Server", "")
            policy = response.headers.get("Content-Security-Policy", "")
    finally:
        web.stop()
    assert "gunicorn" not in server.lower()
    assert directives(policy) == POLICY
