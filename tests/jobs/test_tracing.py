"""jobs.tracing in this process, spans caught by the SDK's in-memory exporter: the publish
span of every enqueue path, the context stored with the task, the process span of each
attempt (child, then link), errors, chains, requests, and nothing at all when off."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler
from django_q.signing import SignedPackage
from django_q.tasks import async_chain, async_task
from opentelemetry.trace import SpanKind, StatusCode

from jobs import tracing
from jobs.engine import registry
from jobs.engine.worker import Worker
from jobs.models import Job
from tests.support import failures, jobtable
from tests.support.tracing import exporter, named, spans, test_tracer, traceparent
from tests.support.web import make_tablo, make_user

__all__ = ["failures", "spans"]  # the jobs it declares (tests.succeeds...); the fixture

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker() -> Iterator[Worker]:
    made = Worker(queue=Conf.CLUSTER_NAME, node=jobtable.node())
    yield made
    made.close()


def package(task_id: str) -> dict[str, Any]:
    return SignedPackage.loads(Job.objects.get(task_id=task_id).payload)


def run_one(worker: Worker) -> None:
    assert worker.claim() == 1
    worker.run_next()
    worker.finish()


def test_an_enqueue_in_a_span_makes_a_producer_span_and_stores_its_context(spans):
    with test_tracer.start_as_current_span("request") as request_span:
        task_id = registry.enqueue("tests.succeeds", 7, on_commit=False)

    (publish,) = named(spans, "publish tests.succeeds")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent.span_id == request_span.get_span_context().span_id
    assert publish.context.trace_id == request_span.get_span_context().trace_id
    assert publish.attributes["messaging.system"] == "tablo"
    assert publish.attributes["messaging.operation"] == "publish"
    assert publish.attributes["messaging.message.id"] == task_id
    assert publish.attributes["tablo.job"] == "tests.succeeds"
    assert publish.attributes["tablo.queue"] == Conf.CLUSTER_NAME
    assert package(task_id)[tracing.PACKAGE_KEY]["traceparent"] == traceparent(publish)


def test_every_enqueue_path_carries_the_context(spans):
    with test_tracer.start_as_current_span("request"):
        by_async_task = async_task("tests.support.failures.succeeds", 1)
        by_job_name = async_task("tests.succeeds", 2)
        many = registry.enqueue_many("tests.succeeds", [(3,), (4,)], on_commit=False)

    publishes = named(spans, "publish tests.succeeds")
    assert len(publishes) == 4
    stored = {tid: package(tid)[tracing.PACKAGE_KEY]["traceparent"] for tid in
              [by_async_task, by_job_name, *many]}  # fmt: skip
    assert set(stored.values()) == {traceparent(span) for span in publishes}
    assert {span.attributes["messaging.message.id"] for span in publishes} == set(stored)


def test_a_schedule_fired_in_a_span_carries_its_context(spans):
    Schedule.objects.create(
        func="tests.support.failures.succeeds",
        args="9",
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() - timedelta(seconds=1),
    )

    with test_tracer.start_as_current_span("scheduler tick"):
        scheduler(broker=get_broker())

    (publish,) = named(spans, "publish tests.succeeds")
    (job,) = Job.objects.filter(job_name="tests.succeeds")
    assert publish.attributes["messaging.message.id"] == job.task_id
    assert package(job.task_id)[tracing.PACKAGE_KEY]["traceparent"] == traceparent(publish)


def test_a_run_is_a_consumer_span_child_of_the_enqueue(spans, worker):
    with test_tracer.start_as_current_span("request"):
        task_id = registry.enqueue("tests.succeeds", 5, on_commit=False)
    (publish,) = named(spans, "publish tests.succeeds")

    run_one(worker)

    (process,) = named(spans, "process tests.succeeds")
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == publish.context.trace_id
    assert process.parent.span_id == publish.context.span_id
    assert not process.links
    assert process.status.status_code is StatusCode.UNSET
    assert process.attributes == {
        "messaging.system": "tablo",
        "messaging.operation": "process",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": Conf.CLUSTER_NAME,
        "messaging.message.id": task_id,
        "tablo.job": "tests.succeeds",
        "tablo.attempt": 1,
        "tablo.queue": Conf.CLUSTER_NAME,
        "tablo.node": worker.node,
    }
    assert not Job.objects.filter(task_id=task_id).exists()  # finished as ever


def test_a_failed_attempt_records_the_error_and_a_retry_links_to_the_enqueue(
    spans, worker, settings
):
    settings.JOBS_BACKOFF_SCALE = 0  # the retry is ready at once
    with test_tracer.start_as_current_span("request"):
        task_id = registry.enqueue("tests.always_fails", "traced", on_commit=False)
    (publish,) = named(spans, "publish tests.always_fails")

    run_one(worker)
    run_one(worker)

    first, second = sorted(
        named(spans, "process tests.always_fails"), key=lambda s: s.attributes["tablo.attempt"]
    )
    assert first.attributes["tablo.attempt"] == 1
    assert first.parent.span_id == publish.context.span_id
    assert second.attributes["tablo.attempt"] == 2
    assert second.parent is None  # its own trace...
    assert second.context.trace_id != publish.context.trace_id
    assert [link.context.span_id for link in second.links] == [publish.context.span_id]
    assert second.links[0].context.trace_id == publish.context.trace_id  # ...linked
    for span in (first, second):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "RuntimeError"
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes["exception.type"] == "RuntimeError"
        assert event.attributes["exception.message"] == "boom traced"
        assert "always_fails" in event.attributes["exception.stacktrace"]
    job = Job.objects.get(task_id=task_id)
    assert (job.state, job.attempt) == (Job.State.RETRYING, 2)
    assert package(task_id)[tracing.PACKAGE_KEY]["traceparent"] == traceparent(publish)


def test_a_chain_next_link_is_published_under_the_run_before_it(spans, worker):
    with test_tracer.start_as_current_span("request") as request_span:
        async_chain(
            [
                ("tests.support.failures.succeeds", (1,)),
                ("tests.support.failures.succeeds", (2,)),
            ]
        )

    run_one(worker)  # the first link; its finish enqueues the second
    run_one(worker)

    first_publish, second_publish = named(spans, "publish tests.succeeds")
    first_run, second_run = named(spans, "process tests.succeeds")
    trace_id = request_span.get_span_context().trace_id
    assert {s.context.trace_id for s in (first_publish, second_publish, first_run, second_run)} == {
        trace_id
    }
    assert first_run.parent.span_id == first_publish.context.span_id
    assert second_publish.parent.span_id == first_run.context.span_id
    assert second_run.parent.span_id == second_publish.context.span_id


def test_an_enqueue_outside_any_span_starts_a_trace_of_its_own(spans, worker):
    task_id = registry.enqueue("tests.succeeds", on_commit=False)

    run_one(worker)

    (publish,) = named(spans, "publish tests.succeeds")
    (process,) = named(spans, "process tests.succeeds")
    assert publish.parent is None
    assert process.parent.span_id == publish.context.span_id
    assert process.attributes["messaging.message.id"] == task_id


def test_a_request_span_is_the_parent_of_what_the_view_enqueues(spans, client, local_storage):
    ann = make_user("ann")
    client.force_login(ann)
    tablo = make_tablo(ann)

    response = client.post(reverse("tablos:delete", args=[tablo.id]))

    assert response.status_code == 302
    (request_span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert request_span.name.startswith("POST ")
    (publish,) = named(spans, "publish files.purge_tablo")
    assert publish.parent.span_id == request_span.context.span_id
    (job,) = Job.objects.filter(job_name="files.purge_tablo")
    stored = SignedPackage.loads(job.payload)[tracing.PACKAGE_KEY]["traceparent"]
    assert stored == traceparent(publish)


def test_off_no_span_is_made_and_no_context_is_stored(worker):
    # A span is active, as in a traced request: off, nothing reads it.
    with test_tracer.start_as_current_span("request"):
        by_name = registry.enqueue("tests.succeeds", on_commit=False)
        by_path = async_task("tests.support.failures.succeeds", 3)
    assert tracing.PACKAGE_KEY not in package(by_name)
    assert tracing.PACKAGE_KEY not in package(by_path)
    exporter.clear()  # the test's own span

    run_one(worker)
    run_one(worker)

    assert exporter.get_finished_spans() == ()
    assert not Job.objects.filter(task_id__in=[by_name, by_path]).exists()  # both ran


# What a process started with this environment has loaded once Django is set up.
PROBE = """
import sys
from django.conf import settings
heavy = ("jobs.tracing", "opentelemetry.instrumentation.django", "opentelemetry.sdk")
instrumented = any("opentelemetry" in m for m in settings.MIDDLEWARE)
print(sorted(m for m in heavy if m in sys.modules), instrumented)
"""


@pytest.mark.parametrize(
    ("env", "loaded"),
    [
        ({}, "[] False"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, "[] False"),
        (
            {"OTEL_TRACES_EXPORTER": "console"},
            "['jobs.tracing', 'opentelemetry.instrumentation.django', 'opentelemetry.sdk'] True",
        ),
    ],
)
def test_off_the_sdk_and_the_instrumentation_are_not_even_imported(env, loaded):
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", PROBE],
        cwd=BASE_DIR,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == loaded
