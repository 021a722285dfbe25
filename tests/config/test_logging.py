"""One logging pipeline: JSON lines with event, level, timestamp and the request id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace

from config.logging import SHARED_PROCESSORS, add_trace_ids, build_logging
from tests.support.otlp import OtlpReceiver
from tests.support.tracing import test_tracer

# One pytest-xdist process runs them all: the process's lines are read once.
pytestmark = pytest.mark.xdist_group("config-logging")

BASE_DIR = Path(__file__).resolve().parents[2]

# Serves one request through the full middleware stack in a fresh process, with
# LOG_FORMAT=json, and logs from structlog, stdlib and django-q2's logger.
SCRIPT = """
import logging, structlog
from django.test import Client
structlog.get_logger("tablo.test").info("structlog line", answer=42)
logging.getLogger("django-q").warning("django-q line")
logging.getLogger("django-q").info("Enqueued [tablo] 7")
logging.getLogger("django-q").error("Failed to pull task from broker")
# A page that reads no database: the lines, not the answer, are under test.
Client().get("/accounts/login/", HTTP_X_REQUEST_ID="req-123")
"""


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """The lines of one such process, read by every test here (they only read them)."""
    return run_with_json_logs()


def run_with_json_logs(**extra: str) -> list[dict]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "DJANGO_", "OTEL_"))},
        "LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **extra,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", SCRIPT],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # Every line is one JSON object: nothing unformatted, nothing printed twice.
    return [json.loads(line) for line in lines]


def test_json_lines_carry_event_level_timestamp(records: list[dict]) -> None:
    structlog_line = next(r for r in records if r["event"] == "structlog line")
    assert structlog_line["level"] == "info"
    assert structlog_line["answer"] == 42
    assert structlog_line["timestamp"].endswith("Z")
    django_q_line = next(r for r in records if r["event"] == "django-q line")
    assert django_q_line["level"] == "warning"
    assert django_q_line["logger"] == "django-q"
    assert sum(1 for r in records if r["event"] == "django-q line") == 1


def test_django_q_info_lines_are_dropped_warnings_and_errors_kept(records: list[dict]) -> None:
    events = [r["event"] for r in records if r.get("logger") == "django-q"]
    # Its INFO line per async_task() says less than the worker's own events.
    assert events == ["django-q line", "Failed to pull task from broker"]


def test_request_log_lines_carry_the_request_id(records: list[dict]) -> None:
    request_lines = [r for r in records if r.get("request_id") == "req-123"]
    events = {r["event"] for r in request_lines}
    assert {"request_started", "request_finished"} <= events
    finished = next(r for r in request_lines if r["event"] == "request_finished")
    assert finished["code"] == 200


def test_request_log_lines_carry_no_trace_ids_when_tracing_is_off(records: list[dict]) -> None:
    assert not [r for r in records if "trace_id" in r or "span_id" in r]


def test_with_tracing_on_a_request_s_log_lines_carry_its_trace_and_span_ids() -> None:
    receiver = OtlpReceiver().start()
    try:
        records = run_with_json_logs(**receiver.env("tablo-web"))
    finally:
        receiver.stop()

    # The process set its SDK up at its first request and exported the request's span.
    (request_span,) = [s for s in receiver.spans if s.kind == "SERVER"]
    assert request_span.resource["service.name"] == "tablo-web"
    finished = next(r for r in records if r["event"] == "request_finished")
    assert (finished["trace_id"], finished["span_id"]) == (
        request_span.trace_id,
        request_span.span_id,
    )
    before = next(r for r in records if r["event"] == "structlog line")  # no span yet
    assert "trace_id" not in before


def test_the_trace_ids_processor_adds_the_active_span_s_ids_only() -> None:
    assert add_trace_ids(None, "info", {"event": "outside"}) == {"event": "outside"}
    with test_tracer.start_as_current_span("work") as span:
        event = add_trace_ids(None, "info", {"event": "inside"})
    ctx = span.get_span_context()
    assert event == {
        "event": "inside",
        "trace_id": trace.format_trace_id(ctx.trace_id),
        "span_id": trace.format_span_id(ctx.span_id),
    }


@pytest.mark.parametrize("trace_ids", [False, True])
def test_the_trace_ids_processor_is_in_the_chain_only_when_tracing_is_on(trace_ids: bool) -> None:
    try:
        config = build_logging(json=True, level="INFO", trace_ids=trace_ids)
        chain = config["formatters"]["structlog"]["foreign_pre_chain"]
        assert (add_trace_ids in chain) is trace_ids
        assert chain[: len(SHARED_PROCESSORS)] == SHARED_PROCESSORS
    finally:
        build_logging(json=True, level="INFO")  # structlog as the tests run it
