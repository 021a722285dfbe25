from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import global_settings
from django.core.files.storage import Storage, default_storage
from django.test import override_settings

from tests.support.cluster import Worker, worker_env
from tests.support.s3 import MotoServer

BASE_DIR = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start real processes first, the fault tests (the longest) before the
    others, each kind in its order: under pytest-xdist the long ones, mostly waiting on
    their processes, then overlap the in-process tests instead of ending the run alone."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is None:
            return 2
        return 0 if item.path.parent.name == "reliability" else 1

    items.sort(key=rank)


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing() -> Iterator[None]:
    """Test users' passwords are hashed with MD5: PBKDF2 costs half a second of CPU per
    hash, which is for real users. The project's hashers follow, for hashes written by
    the processes a test starts (they run the project's settings)."""
    hashers = ["django.contrib.auth.hashers.MD5PasswordHasher", *global_settings.PASSWORD_HASHERS]
    with override_settings(PASSWORD_HASHERS=hashers):
        yield


@pytest.fixture(autouse=True)
def _forget_node() -> Iterator[None]:
    yield
    from jobs.engine import nodes

    nodes.forget()  # a node registered by this test's claims went with its database rows


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    yield server
    server.stop()


@dataclass
class StorageContext:
    """The storage a test runs on, and the environment a worker needs to use it too."""

    kind: str  # "local" or "s3"
    storage: Storage
    env: dict[str, str]
    bucket: str | None = None
    server: MotoServer | None = None

    def keys(self, prefix: str = "") -> set[str]:
        """Every object key in the storage, listed directly (not through our code)."""
        if self.kind == "s3":
            assert self.server is not None
            paginator = self.server.client().get_paginator("list_objects_v2")
            return {
                obj["Key"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for obj in page.get("Contents", [])
            }
        root = Path(self.storage.location)
        return {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).as_posix().startswith(prefix)
        }


@pytest.fixture
def local_storage(settings, tmp_path: Path) -> StorageContext:
    media = tmp_path / "media"
    media.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    return StorageContext(kind="local", storage=default_storage, env={"MEDIA_ROOT": str(media)})


@pytest.fixture
def s3_storage(settings, s3_server: MotoServer) -> StorageContext:
    bucket = f"tablo-test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    settings.STORAGES = {**settings.STORAGES, "default": s3_server.storage_settings(bucket)}
    settings.S3_BUCKET = bucket
    return StorageContext(
        kind="s3",
        storage=default_storage,
        env=s3_server.env(bucket),
        bucket=bucket,
        server=s3_server,
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> StorageContext:
    """Runs the test once on local file storage and once on S3 over HTTP."""
    return request.getfixturevalue(f"{request.param}_storage")


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator:
    """Start real ``qcluster`` processes on the test database; all stopped at teardown."""
    workers: list[Worker] = []

    def start(
        *, env: dict[str, str] | None = None, wait_ready: bool = True, **extra: str
    ) -> Worker:
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = Worker(log, env=env if env is not None else worker_env(**extra))
        workers.append(worker)
        return worker.start(wait_ready=wait_ready)

    yield start
    for worker in workers:
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()
