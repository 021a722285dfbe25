"""Benchmark: the orphan cleanup job on an S3 endpoint (moto server) against one-by-one deletes.

For each size N it starts a fresh moto server, writes N objects and N rows of
which M are orphans (their tablo does not exist), then runs, each in its own
process so that ``ru_maxrss`` is the real peak of that phase alone:

* ``clean``: ``files.cleanup.orphan_cleanup()`` as the hourly job runs it
  (orphan rows, then the stray-object listing of the whole ``tablos/`` prefix);
* ``baseline``: ``storage.delete(name)`` for a sample of objects, one request
  each. The time for all M orphans is estimated from the sample's rate (said so
  in the output); ``--baseline-sample 0`` deletes all M instead.

Quick run (a minute or two)::

    .venv/bin/python benchmarks/orphan_cleanup.py

Full run (documented in docs/cleanup.md; ~20 minutes, mostly writing objects)::

    .venv/bin/python benchmarks/orphan_cleanup.py --sizes 10000,50000,100000,200000

The database is ``BENCH_DATABASE_URL`` (default: the SQLite file var/bench.sqlite3);
its tablos and files tables are emptied for every size. Point it at a scratch
PostgreSQL database to measure there, never at one holding real data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))

FILES_PER_TABLO = 100


def django_env(database_url: str, s3_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "DJANGO_", "LOG_"))}
    env.update(s3_env)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings",
        # DEBUG off: with it on, Django keeps the last 9000 queries in memory.
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="localhost",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_phase(phase: str, env: dict[str, str], *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"phase {phase} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- phases (each runs in its own process) -----------------------------------


def setup_django() -> None:
    import django

    django.setup()


def phase_populate(files: int, orphans: int, keys_file: str) -> dict:
    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction

    from files.models import TabloFile
    from tablos.models import Tablo

    call_command("migrate", verbosity=0)
    TabloFile.objects.all().delete()
    Tablo.objects.all().delete()
    owner, _ = get_user_model().objects.get_or_create(username="bench")

    live = files - orphans
    live_tablos = [
        Tablo(owner=owner, name=f"live {i}")
        for i in range((live + FILES_PER_TABLO - 1) // FILES_PER_TABLO)
    ]
    Tablo.objects.bulk_create(live_tablos, batch_size=1000)
    orphan_tablo_ids = [
        uuid.uuid4() for _ in range((orphans + FILES_PER_TABLO - 1) // FILES_PER_TABLO)
    ]

    def tablo_of(i: int) -> uuid.UUID:
        if i < orphans:
            return orphan_tablo_ids[i // FILES_PER_TABLO]
        return live_tablos[(i - orphans) // FILES_PER_TABLO].id

    keys = []
    rows = []
    for i in range(files):
        tablo_id = tablo_of(i)
        key = f"tablos/{tablo_id}/{uuid.uuid4().hex}/file-{i}.txt"
        keys.append(key)
        rows.append(
            TabloFile(
                tablo_id=tablo_id,
                storage_key=key,
                original_name=f"file-{i}.txt",
                content_type="text/plain",
                size_bytes=64,
            )
        )
    started = time.monotonic()
    with transaction.atomic():
        TabloFile.objects.bulk_create(rows, batch_size=5000)
    # The objects are written by the server phase straight into moto's memory:
    # over HTTP moto takes ~8 ms per PutObject, an hour for the full run.
    Path(keys_file).write_text("\n".join(keys))
    return {"populate_s": round(time.monotonic() - started, 1)}


def paged_listing() -> None:
    """Make moto's ListObjectsV2 cost one page per page, as on S3.

    moto 5 collects and sorts the whole bucket, then scans for the continuation
    token, on every page: listing N objects costs O(N^2) (about 9 s per page at
    100k objects here), which would measure moto, not the job. This keeps one
    sorted name list per listing (made on its first page) and bisects into it.
    Only the case the job uses is replaced: no delimiter.
    """
    import bisect

    from moto.s3.models import FakeDeleteMarker, S3Backend

    original = S3Backend.list_objects_v2
    sorted_names: dict[str, list[str]] = {}

    def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
        if delimiter:
            return original(
                self, bucket, prefix, delimiter, continuation_token, start_after, max_keys
            )
        prefix = prefix or ""
        if continuation_token is None or bucket.name not in sorted_names:
            sorted_names[bucket.name] = sorted(k for k in bucket.keys if k.startswith(prefix))
        names = sorted_names[bucket.name]
        after = self._pagination_tokens.get(continuation_token) if continuation_token else None
        after = after or start_after
        index = bisect.bisect_right(names, after) if after else 0
        page = []
        while index < len(names) and len(page) < max_keys:
            key = bucket.keys.get(names[index])  # deleted since the first page: skip
            index += 1
            if key is not None and not isinstance(key, FakeDeleteMarker):
                page.append(key)
        truncated = index < len(names)
        token = None
        if truncated and page:
            token = uuid.uuid4().hex
            self._pagination_tokens[token] = page[-1].name
        return page, truncated, token

    S3Backend.list_objects_v2 = list_objects_v2


def phase_server(port: int, bucket: str, keys_file: str, baseline: int) -> None:
    """A moto server whose bucket already holds the keys of ``keys_file``, plus
    ``baseline`` objects under ``baseline/`` for the one-by-one deletes."""
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    # One log line per request would cost the server more than some requests do.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    paged_listing()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    body = b"x" * 64
    with open(keys_file) as keys:
        for key in keys:
            backend.put_object(bucket, key.rstrip("\n"), body)
    for i in range(baseline):
        backend.put_object(bucket, f"baseline/{i}.txt", body)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def _client(endpoint: str, env: dict[str, str] | None = None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=(env or os.environ)["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=(env or os.environ)["S3_SECRET_ACCESS_KEY"],
        region_name=(env or os.environ)["S3_REGION"],
        config=Config(max_pool_connections=32),
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (Linux /proc), to see where time goes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase_clean() -> dict:
    setup_django()
    from files import cleanup

    rss_ready = peak_rss_mb()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    report = cleanup.orphan_cleanup()
    seconds = time.perf_counter() - started
    return {
        **report.summary(),
        "seconds": seconds,
        "job_cpu_s": round(cpu_seconds() - cpu_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_setup_mb": round(rss_ready, 1),
    }


def phase_baseline(sample: int) -> dict:
    setup_django()
    from django.core.files.storage import default_storage

    names = [f"baseline/{i}.txt" for i in range(sample)]
    if not default_storage.exists(names[-1]):  # also connects before timing
        raise SystemExit("baseline objects are missing")
    started = time.perf_counter()
    for name in names:
        default_storage.delete(name)
    seconds = time.perf_counter() - started
    return {"sample": sample, "seconds": seconds, "per_s": sample / seconds}


# --- driver --------------------------------------------------------------------


def start_server(bucket: str, keys_file: Path, baseline: int) -> tuple[subprocess.Popen, int]:
    from tests.support.s3 import free_port

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--phase",
            "server",
            "--port",
            str(port),
            "--bucket",
            bucket,
            "--keys-file",
            str(keys_file),
            "--sample",
            str(baseline),
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise SystemExit("moto server phase failed")
    return process, port


def measure(size: int, orphans: int, sample: int, database_url: str) -> dict:
    bucket = f"bench-{size}"
    keys_file = BASE_DIR / "var" / f"bench-keys-{size}.txt"
    env = django_env(database_url, {})
    populate = run_phase(
        "populate",
        env,
        "--files",
        str(size),
        "--orphans",
        str(orphans),
        "--keys-file",
        str(keys_file),
    )
    sample = sample or orphans
    started = time.monotonic()
    server, port = start_server(bucket, keys_file, sample)
    load_s = time.monotonic() - started
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3_env = {
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": endpoint,
            "S3_ACCESS_KEY_ID": "testing",
            "S3_SECRET_ACCESS_KEY": "testing",
            "S3_REGION": "us-east-1",
            "S3_USE_PATH_STYLE": "true",
        }
        env = django_env(database_url, s3_env)
        server_cpu = process_cpu_seconds(server.pid)
        clean = run_phase("clean", env)
        clean["moto_cpu_s"] = round(process_cpu_seconds(server.pid) - server_cpu, 1)
        baseline = run_phase("baseline", env, "--sample", str(sample))
        client = _client(endpoint, s3_env)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        left = sum(page["KeyCount"] for page in pages)
    finally:
        server.terminate()
        server.wait()
        keys_file.unlink(missing_ok=True)
    if clean["rows_deleted"] != orphans or clean["errors"] or left != size - orphans:
        raise SystemExit(f"cleanup did not delete exactly the orphans: {clean}, {left} left")
    estimated = orphans / baseline["per_s"]
    return {
        "files": size,
        "orphans": orphans,
        "populate_s": populate["populate_s"],
        "moto_load_s": round(load_s, 1),
        "clean": clean,
        "baseline": baseline,
        "baseline_estimated_s": estimated,
        "objects_left": left,
        "speedup": estimated / clean["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated N (files)")
    parser.add_argument(
        "--orphan-fraction", type=float, default=0.5, help="M = N * fraction (default 0.5)"
    )
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=2000,
        help="objects deleted one by one to time the baseline; 0: all M",
    )
    parser.add_argument(
        "--phase", choices=["populate", "server", "clean", "baseline"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--keys-file", help=argparse.SUPPRESS)
    parser.add_argument("--files", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--orphans", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase == "populate":
        print(json.dumps(phase_populate(args.files, args.orphans, args.keys_file)))
        return
    if args.phase == "server":
        phase_server(args.port, args.bucket, args.keys_file, args.sample)
        return
    if args.phase == "clean":
        print(json.dumps(phase_clean()))
        return
    if args.phase == "baseline":
        print(json.dumps(phase_baseline(args.sample)))
        return

    database_url = os.environ.get(
        "BENCH_DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'bench.sqlite3'}"
    )
    vendor = database_url.split(":", 1)[0]
    print(f"orphan cleanup benchmark: S3 = moto server over HTTP, database = {vendor}")
    print(
        "baseline = storage.delete() per object, rate measured on a sample of "
        f"{args.baseline_sample or 'all'} deletes and extrapolated to M"
    )
    header = (
        f"{'files N':>8} {'orphans M':>9} {'job s':>7} {'rows pass s':>11} {'objects/s':>9} "
        f"{'stray pass s':>12} {'peak RSS MB':>11} {'baseline/s':>10} {'baseline s':>10} "
        f"{'speedup rows':>12} {'speedup job':>11} {'job CPU s':>9} {'moto CPU s':>10}"
    )
    print(header)
    for size in (int(s) for s in args.sizes.split(",")):
        orphans = int(size * args.orphan_fraction)
        row = measure(size, orphans, args.baseline_sample, database_url)
        clean = row["clean"]
        rows_s = clean["rows_pass_ms"] / 1000
        baseline_s = row["baseline_estimated_s"]
        print(
            f"{size:>8} {orphans:>9} {clean['seconds']:>7.1f} {rows_s:>11.1f} "
            f"{orphans / rows_s:>9.0f} {clean['stray_pass_ms'] / 1000:>12.1f} "
            f"{clean['peak_rss_mb']:>11.1f} {row['baseline']['per_s']:>10.1f} "
            f"{baseline_s:>10.1f} {baseline_s / rows_s:>11.1f}x {row['speedup']:>10.1f}x "
            f"{clean['job_cpu_s']:>9.1f} {clean['moto_cpu_s']:>10.1f}",
            flush=True,
        )
        print("  detail: " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
