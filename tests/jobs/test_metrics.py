"""/metrics: who may read it, and the values after a known workload on a real cluster."""

from __future__ import annotations

import time

import pytest
from django_q.conf import Conf
from prometheus_client.parser import text_string_to_metric_families

from jobs import pauses
from jobs.engine import registry
from jobs.models import Job, JobStat
from tests.support import runtime as _runtime_jobs  # noqa: F401 (registers tests.echo, tests.boom)

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-0123456789"


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_off_when_neither_token_nor_addresses_are_set(client, settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", []
    assert client.get("/metrics").status_code == 404


def test_the_bearer_token_is_required(client, settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = TOKEN, []
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain; version=")
    assert "tablo_queue_tasks" in ok.content.decode()


def test_allowed_addresses_need_no_token(client, settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 403
    settings.METRICS_TOKEN = TOKEN  # an address outside: the token still opens it
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 401
    assert (
        client.get(
            "/metrics", REMOTE_ADDR="192.168.1.1", headers={"Authorization": f"Bearer {TOKEN}"}
        ).status_code
        == 200
    )


def test_the_web_apps_request_metrics_follow(client, settings) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = TOKEN, []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    name = "django_http_requests_total_by_view_transport_method_total"
    labels = (("method", "GET"), ("transport", "http"), ("view", "healthz"))

    def healthz_requests() -> float:
        return samples(client.get("/metrics", headers=auth).content).get((name, labels), 0.0)

    before = healthz_requests()
    for _ in range(3):
        client.get("/healthz")
    assert healthz_requests() == before + 3


def wait_until(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finished(func: str, outcome: str) -> int:
    row = JobStat.objects.filter(span="total", func=func).first()
    return 0 if row is None else getattr(row, outcome)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_values_after_a_known_workload(client, settings, worker_factory) -> None:
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = TOKEN, []
    settings.JOBS_DEFAULT_MAX_ATTEMPTS = 1  # a failure is final: dead
    queue = Conf.CLUSTER_NAME
    echo = registry.get("tests.echo").path
    boom = registry.get("tests.boom").path
    worker = worker_factory(JOBS_DEFAULT_MAX_ATTEMPTS="1")
    for i in range(4):
        registry.enqueue("tests.echo", f"v{i}", on_commit=False)
    for _ in range(2):
        registry.enqueue("tests.boom", on_commit=False)
    wait_until(
        lambda: finished(echo, "succeeded") == 4 and finished(boom, "failed") == 2,
        timeout=60,
        what="the runs counted",
    )
    wait_until(
        lambda: Job.objects.filter(state="dead").count() == 2, timeout=30, what="2 dead tasks"
    )
    Job.objects.create(task_id="waiting", queue="reports", name="n", func=echo, payload="p")
    pauses.pause_queue(queue="reports")

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    values = samples(response.content)

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    assert value("tablo_tasks_finished_total", queue=queue, job=echo, outcome="succeeded") == 4
    assert value("tablo_tasks_finished_total", queue=queue, job=echo, outcome="failed") == 0
    assert value("tablo_tasks_finished_total", queue=queue, job=boom, outcome="failed") == 2
    assert value("tablo_task_duration_seconds_count", queue=queue, job=echo) == 4
    assert value("tablo_task_duration_seconds_bucket", queue=queue, job=echo, le="+Inf") == 4
    # An echo returns in well under a second.
    assert value("tablo_task_duration_seconds_bucket", queue=queue, job=echo, le="1.0") == 4
    assert 0 < value("tablo_task_duration_seconds_sum", queue=queue, job=echo) < 4
    assert value("tablo_queue_tasks", queue=queue, state="dead") == 2
    assert value("tablo_tasks_dead", queue=queue) == 2
    assert value("tablo_tasks_retrying", queue=queue) == 0
    assert value("tablo_queue_tasks", queue="reports", state="queued") == 1
    assert value("tablo_queue_oldest_queued_age_seconds", queue="reports") >= 0
    assert value("tablo_queue_paused", queue="reports") == 1
    assert value("tablo_queue_paused", queue=queue) == 0
    assert value("tablo_worker_nodes", state="ok") == 1
    worker.stop()


def healthz_requests_per_process(folder) -> list[float]:
    """The healthz request count each web process wrote (one counter file per pid)."""
    import shutil
    import tempfile

    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    counts = []
    for path in sorted(folder.glob("counter_*.db")):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=alone)
            counts.append(samples(generate_latest(registry)).get(HEALTHZ_REQUESTS, 0.0))
    return counts


HEALTHZ_REQUESTS = (
    "django_http_requests_total_by_view_transport_method_total",
    (("method", "GET"), ("transport", "http"), ("view", "healthz")),
)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_request_metrics_add_up_across_gunicorn_workers(tmp_path) -> None:
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from tests.reliability.webserver import WebServer
    from tests.support.cluster import worker_env

    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = worker_env(METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    # Sync workers (one thread) serve one request at a time: concurrent requests spread.
    server = WebServer(tmp_path / "web.log", env, workers=3, threads=1).start()
    try:

        def scrape() -> float:
            request = urllib.request.Request(  # noqa: S310 (our own server)
                f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            body = urllib.request.urlopen(request, timeout=10).read()  # noqa: S310
            return samples(body).get(HEALTHZ_REQUESTS, 0.0)

        def healthz(_: int) -> None:
            urllib.request.urlopen(f"{server.url}/healthz", timeout=10).read()  # noqa: S310

        before = scrape()  # the start-up probes
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(healthz, range(30)))
        served = [n for n in healthz_requests_per_process(multiproc) if n]
        assert len(served) > 1, f"one process served every request: {served}"
        # A late start-up probe may land after the first scrape: at least our 30 more.
        total = sum(served)
        assert total >= before + 30
        # Whichever worker answers the scrape, it answers with the sum over all of them.
        assert {scrape() for _ in range(6)} == {total}
    finally:
        server.stop()
