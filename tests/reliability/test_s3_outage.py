"""The S3 endpoint goes away while the worker deletes files: nothing is lost or left dangling.

The endpoint is a private moto server behind a TCP proxy (tests/reliability/proxy.py):
taking the proxy down refuses and resets connections like a dead endpoint, while
moto keeps the bucket so that the test can see what was (not) deleted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from files.models import TabloFile
from jobs.engine import registry
from jobs.models import Job, JobAttempt
from tests.reliability.proxy import TcpProxy
from tests.support.cleanup import make_tablo, put_file
from tests.support.cluster import worker_env
from tests.support.s3 import MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKER = {
    "Q_TIMEOUT": "20",
    "JOBS_BACKOFF_SCALE": "0.1",  # retries after ~0.1 s, 1.6 s, 8 s
    "Q_WORKERS": "1",
}


class Endpoint:
    def __init__(self, server: MotoServer, proxy: TcpProxy, bucket: str) -> None:
        self.server, self.proxy, self.bucket = server, proxy, bucket

    def keys(self) -> set[str]:
        """Listed from moto directly, whether the proxy is up or not."""
        page = self.server.client().list_objects_v2(Bucket=self.bucket)
        return {o["Key"] for o in page.get("Contents", [])}


@pytest.fixture
def endpoint(settings, tmp_path: Path) -> Iterator[Endpoint]:
    server = MotoServer(log_path=tmp_path / "moto.log")
    server.start()
    proxy = TcpProxy(server.port)
    proxy.start()
    bucket = f"outage-{uuid.uuid4().hex[:10]}"
    server.client().create_bucket(Bucket=bucket)
    storage = server.storage_settings(bucket)
    storage["OPTIONS"] = {**storage["OPTIONS"], "endpoint_url": proxy.url}
    settings.STORAGES = {**settings.STORAGES, "default": storage}
    settings.S3_BUCKET = bucket
    yield Endpoint(server, proxy, bucket)
    proxy.stop()
    server.stop()


def wait_for(predicate, *, timeout: float, what: str, worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert worker.process.poll() is None, worker.log()[-4000:]
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.log()[-4000:]}")


def failed_attempts(task_id: str) -> list[JobAttempt]:
    return list(JobAttempt.objects.filter(task_id=task_id, succeeded=False))


@pytest.mark.parametrize("job_name", ["files.orphan_cleanup", "files.purge_tablo"])
def test_deletion_job_survives_an_s3_outage(endpoint, worker_factory, job_name: str) -> None:
    tablo = make_tablo()
    files = [put_file(default_storage, tablo.id, f"f{i}.txt") for i in range(3)]
    keys = {f.storage_key for f in files}
    assert keys <= endpoint.keys()
    tablo_id = str(tablo.id)
    tablo.delete()  # its files are now orphans, for either job

    endpoint.proxy.stop()
    args = (tablo_id,) if job_name == "files.purge_tablo" else ()
    task_id = registry.enqueue(job_name, *args)
    env = worker_env(
        **{**WORKER, **endpoint.server.env(endpoint.bucket), "S3_ENDPOINT_URL": endpoint.proxy.url}
    )
    worker = worker_factory(env=env)
    wait_for(lambda: failed_attempts(task_id), timeout=90, what="a failed attempt", worker=worker)

    # Down: nothing deleted on either side, the task waits for a retry with a clear error.
    assert TabloFile.objects.filter(tablo_id=tablo_id).count() == 3
    assert keys <= endpoint.keys()
    job = Job.objects.get(task_id=task_id)
    assert job.state in (Job.State.RETRYING, Job.State.RUNNING, Job.State.QUEUED)
    error = failed_attempts(task_id)[0]
    assert "storage unavailable" in error.error_message.lower(), error.error_message

    endpoint.proxy.start()
    wait_for(
        lambda: not Job.objects.filter(task_id=task_id).exists(),
        timeout=90, what="the job to succeed after the endpoint is back", worker=worker,
    )  # fmt: skip
    assert not TabloFile.objects.filter(tablo_id=tablo_id).exists()
    assert not (keys & endpoint.keys())
    assert JobAttempt.objects.filter(task_id=task_id, succeeded=True).exists()
    assert worker.stop() == 0


def test_upload_during_an_s3_outage_leaves_no_row_and_no_object(endpoint) -> None:
    tablo = make_tablo()
    client = Client(raise_request_exception=False)
    client.force_login(tablo.owner)
    endpoint.proxy.stop()
    response = client.post(
        reverse("tablos:upload", args=[tablo.id]),
        {"file": SimpleUploadedFile("report.pdf", b"%PDF-1.4", content_type="application/pdf")},
        follow=True,
    )
    assert not TabloFile.objects.exists()
    endpoint.proxy.start()
    assert endpoint.keys() == set()
    # A clear message on the tablo's page, never a success and never a bare 500.
    assert response.status_code == 200
    page = response.content.decode()
    assert "could not be stored because of a server problem" in page
    assert "“report.pdf” uploaded." not in page

    # Back up: the same upload works.
    response = client.post(
        reverse("tablos:upload", args=[tablo.id]),
        {"file": SimpleUploadedFile("report.pdf", b"%PDF-1.4", content_type="application/pdf")},
    )
    assert response.status_code == 302
    assert TabloFile.objects.count() == 1
    assert endpoint.keys() == {TabloFile.objects.get().storage_key}
