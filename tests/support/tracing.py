"""Tracing on in the test process, as ``OTEL_TRACES_EXPORTER`` turns it on in a real one,
with every finished span kept in memory (the SDK's ``InMemorySpanExporter``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobs import tracing

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
# The test's own spans (a request's, say), from the same provider.
test_tracer = provider.get_tracer("tests")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, off again after it."""
    tracing.start_process(provider)  # once per process: the SDK takes one provider
    assert trace.get_tracer_provider() is provider
    exporter.clear()
    tracing.connect()
    yield exporter
    tracing.disconnect()
    exporter.clear()


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


def traceparent(span: Any) -> str:
    """The W3C ``traceparent`` of a span."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
