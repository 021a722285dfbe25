"""Traces across processes: a request in this process (spans in memory), its task run by
a real ``qcluster`` whose worker process exports over OTLP/HTTP to a local receiver,
set up only by the standard ``OTEL_*`` variables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings
from django.urls import reverse

from jobs.engine import registry
from jobs.models import Job, WorkerNode
from tests.support import django_tasks, failures
from tests.support.cluster import worker_env
from tests.support.otlp import OtlpReceiver
from tests.support.runtime import log_events
from tests.support.tracing import named, spans, test_tracer
from tests.support.web import make_tablo, make_user

__all__ = ["failures", "spans"]  # the jobs it declares (tests.always_fails); the fixture

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


def test_a_request_trace_goes_on_in_the_worker_process(
    spans, client, local_storage, worker_factory, receiver
):
    ann = make_user("ann")
    client.force_login(ann)
    tablo = make_tablo(ann)

    response = client.post(reverse("tablos:delete", args=[tablo.id]))  # async_task inside

    assert response.status_code == 302
    (request_span,) = [s for s in spans.get_finished_spans() if s.name.startswith("POST ")]
    (publish,) = named(spans, "publish files.purge_tablo")
    assert publish.parent.span_id == request_span.context.span_id
    worker = worker_factory(env=worker_env(**local_storage.env, **receiver.env("tablo-worker")))
    worker.wait_until(
        lambda: receiver.named("process files.purge_tablo"),
        timeout=60,
        what="the worker's span of the purge, over OTLP",
    )
    (process,) = receiver.named("process files.purge_tablo")
    assert process.kind == "CONSUMER"
    assert process.trace_id == f"{request_span.context.trace_id:032x}"
    assert process.parent_span_id == f"{publish.context.span_id:016x}"
    assert process.resource["service.name"] == "tablo-worker"
    node = WorkerNode.objects.get(pid=worker.pid)
    assert process.attributes["tablo.node"] == node.id
    assert process.attributes["tablo.attempt"] == 1
    assert process.attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]
    # The job's own log line, written inside the span, names it.
    (finished,) = log_events(worker.log(), "tablo purge finished")
    assert (finished["trace_id"], finished["span_id"]) == (process.trace_id, process.span_id)
    # Lines written outside any span carry no ids.
    (running,) = [e for e in log_events(worker.log()) if e["event"].endswith(" running.")]
    assert "trace_id" not in running


def test_retries_in_a_worker_process_link_to_the_enqueue_and_record_the_error(
    spans, worker_factory, receiver
):
    worker = worker_factory(JOBS_BACKOFF_SCALE="0.001", **receiver.env("tablo-worker"))
    with test_tracer.start_as_current_span("request"):
        task_id = registry.enqueue("tests.always_fails", "over otlp", on_commit=False)
    (publish,) = named(spans, "publish tests.always_fails")

    worker.wait_until(
        lambda: len(receiver.named("process tests.always_fails")) == 3,
        timeout=60,
        what="three attempts' spans, over OTLP",
    )
    runs = sorted(
        receiver.named("process tests.always_fails"), key=lambda s: s.attributes["tablo.attempt"]
    )
    enqueued = (f"{publish.context.trace_id:032x}", f"{publish.context.span_id:016x}")
    assert [s.attributes["tablo.attempt"] for s in runs] == [1, 2, 3]
    assert (runs[0].trace_id, runs[0].parent_span_id) == enqueued
    assert runs[0].links == []
    for retry in runs[1:]:
        assert retry.parent_span_id == ""
        assert retry.trace_id != enqueued[0]
        assert retry.links == [enqueued]
    for run in runs:
        assert run.attributes["messaging.message.id"] == task_id
        assert (run.status, run.status_message) == ("ERROR", "RuntimeError")
        assert run.attributes["error.type"] == "RuntimeError"
        ((event, attributes),) = run.events
        assert event == "exception"
        assert attributes["exception.message"] == "boom over otlp"


def test_a_stopping_worker_sends_the_spans_still_in_its_batch(spans, worker_factory, receiver):
    # No batch is due for ten minutes: only the worker process's exit sends it.
    worker = worker_factory(**{**receiver.env("tablo-worker"), "OTEL_BSP_SCHEDULE_DELAY": "600000"})
    with test_tracer.start_as_current_span("request"):
        task_id = registry.enqueue("tests.succeeds", on_commit=False)
    worker.wait_until(
        lambda: not Job.objects.filter(task_id=task_id).exists(), timeout=30, what="the run"
    )
    assert not receiver.named("process tests.succeeds")

    assert worker.stop() == 0

    (process,) = receiver.named("process tests.succeeds")
    assert process.attributes["messaging.message.id"] == task_id


@override_settings(ROOT_URLCONF="tests.support.task_views")
def test_a_django_task_enqueued_in_a_request_goes_on_in_the_worker_process(
    spans, client, worker_factory, receiver
):
    worker = worker_factory(**receiver.env("tablo-worker"))

    response = client.post("/enqueue-add/")  # @task(...).enqueue() inside

    assert response.status_code == 200
    task_id = response.json()["id"]
    (request_span,) = [s for s in spans.get_finished_spans() if s.name.startswith("POST ")]
    (publish,) = [s for s in spans.get_finished_spans() if s.name.startswith("publish ")]
    assert publish.parent.span_id == request_span.context.span_id
    assert publish.attributes["messaging.message.id"] == task_id
    name = publish.name.replace("publish ", "process ", 1)

    worker.wait_until(
        lambda: receiver.named(name), timeout=60, what="the worker's span of the Django task"
    )
    (process,) = receiver.named(name)
    assert process.kind == "CONSUMER"
    assert process.trace_id == f"{request_span.context.trace_id:032x}"
    assert process.parent_span_id == f"{publish.context.span_id:016x}"
    assert process.attributes["messaging.message.id"] == task_id
    assert process.attributes["tablo.attempt"] == 1
    assert django_tasks.add.get_result(task_id).return_value == 5
