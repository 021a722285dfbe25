"""The embedded default (SQLite file) under a real web server and a worker at once.

Always SQLite, whatever the suite's database: the test migrates its own file.
50 uploads are sent concurrently over HTTP while the worker writes the effects
of 200 tasks to the same file; nothing may fail with "database is locked" and
no row may be lost.
"""

from __future__ import annotations

import json
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.reliability.jobs import EFFECT_TABLE_SQL
from tests.reliability.support import clean_env, run_manage
from tests.reliability.webserver import WebServer
from tests.support.cluster import Worker

pytestmark = pytest.mark.slow

UPLOADS = 50
TASKS = 200
SETUP = (
    "import json; from django.contrib.auth import get_user_model;"
    "from django_q.tasks import async_task;"
    "from tablos.models import Tablo;"
    "u = get_user_model().objects.create_user('up', password='upload-pass-1234');"
    "t = Tablo.objects.create(owner=u, name='load');"
    f"[async_task('tests.reliability.jobs.record', f't{{i}}', 0.01) for i in range({TASKS})];"
    "print(json.dumps({'tablo': str(t.id)}))"
)


def sign_in(base: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=30)
    response = session.post(
        f"{base}/accounts/login/",
        data={
            "username": "up",
            "password": "upload-pass-1234",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:2000]
    return session


def test_concurrent_uploads_while_the_worker_runs(tmp_path: Path) -> None:
    db = tmp_path / "tablo.sqlite3"
    media = tmp_path / "media"
    env = clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{db}",
        MEDIA_ROOT=str(media),
        PYTHONUNBUFFERED="1",
        LOG_FORMAT="json",
        Q_WORKERS="2",
    )
    migrated = run_manage("migrate", "--no-input", DATABASE_URL=f"sqlite:///{db}")
    assert migrated.returncode == 0, migrated.stderr
    with sqlite3.connect(db) as conn:
        conn.execute(EFFECT_TABLE_SQL)
    made = run_manage(
        "shell", "--no-imports", "-c", SETUP, DATABASE_URL=f"sqlite:///{db}", MEDIA_ROOT=str(media)
    )
    assert made.returncode == 0, made.stderr
    tablo_id = json.loads(made.stdout.strip().splitlines()[-1])["tablo"]

    web = WebServer(tmp_path / "web.log", env).start()
    worker = Worker(tmp_path / "worker.log", env=env).start()
    try:
        session = sign_in(web.url)
        cookies = session.cookies.get_dict()
        upload_url = f"{web.url}/tablos/{tablo_id}/files/"

        def upload(i: int) -> int:
            with requests.Session() as s:
                s.cookies.update(cookies)
                response = s.post(
                    upload_url,
                    data={"csrfmiddlewaretoken": cookies["csrftoken"]},
                    files={"file": (f"file-{i:02d}.txt", f"content {i}".encode() * 200)},
                    headers={"Referer": f"{web.url}/tablos/{tablo_id}/"},
                    timeout=120,
                    allow_redirects=False,
                )
                return response.status_code

        with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
            statuses = list(pool.map(upload, range(UPLOADS)))

        worker.wait_until(
            lambda: _count(db, "SELECT COUNT(*) FROM rel_effect") == TASKS,
            timeout=120,
            what="every task's effect",
        )
        assert worker.stop() == 0
    finally:
        worker.kill()
        web.stop()

    rows = _count(db, "SELECT COUNT(*) FROM files_tablofile")
    stored = [p for p in media.rglob("*") if p.is_file()]
    completed = _count(db, "SELECT COUNT(*) FROM rel_effect")
    logs = web.log() + worker.log()
    print(
        f"sqlite: uploads sent={UPLOADS} redirected={statuses.count(302)} rows={rows} "
        f"objects={len(stored)}; tasks sent={TASKS} completed={completed}"
    )
    assert statuses == [302] * UPLOADS, statuses
    assert rows == UPLOADS
    assert len(stored) == UPLOADS
    assert not re.search(r"database is locked", logs, re.IGNORECASE)
    assert "Traceback" not in web.log()


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchone()[0]
