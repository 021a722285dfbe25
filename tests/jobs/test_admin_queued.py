from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ, Success

from jobs.models import Job, QueuedJob
from tests.support.admin import grant, url
from tests.support.failures import failed_rows, queue_job

CHANGELIST = "admin:jobs_queuedjob_changelist"
SUCCEEDS = "tests.support.failures.succeeds"


def queued(*args: object, state: str = Job.State.QUEUED, **fields: object) -> Job:
    row, _ = queue_job(SUCCEEDS, *args, state=state)
    if fields:
        Job.objects.filter(id=row.id).update(**fields)
        row.refresh_from_db()
    return row


def listed(client: Client, query: str = "") -> list[int]:
    response = client.get(url(CHANGELIST, query=query))
    assert response.status_code == 200
    return [job.id for job in response.context["cl"].result_list]


@pytest.mark.django_db
def test_lists_queued_running_and_retrying_but_not_dead(admin_client: Client) -> None:
    waiting = queued(1)
    running = queued(2, state=Job.State.RUNNING, claimed_by="cluster-a", attempt=2, max_attempts=5)
    [retrying] = failed_rows(1, state=Job.State.RETRYING)
    [dead] = failed_rows(1)
    assert set(listed(admin_client)) == {waiting.id, running.id, retrying.id}
    assert dead.id not in listed(admin_client)
    content = admin_client.get(url(CHANGELIST)).content.decode()
    assert "Task name" in content
    assert waiting.name in content
    assert "Runs at" in content
    assert "cluster-a" in content
    assert "tests.succeeds" in content
    assert SUCCEEDS in content
    assert "2 of 5" in content
    assert "3 queued tasks" in content


@pytest.mark.django_db
def test_next_to_run_first(admin_client: Client) -> None:
    now = timezone.now()
    later = queued(1, run_at=now + timedelta(minutes=5))
    sooner = queued(2, run_at=now)
    urgent = queued(3, run_at=now + timedelta(hours=1), priority=10)
    assert listed(admin_client) == [urgent.id, sooner.id, later.id]


@pytest.mark.django_db
def test_state_filter_has_fixed_choices(admin_client: Client) -> None:
    waiting = queued(1)
    running = queued(2, state=Job.State.RUNNING)
    [retrying] = failed_rows(1, state=Job.State.RETRYING)
    assert listed(admin_client, "state=queued") == [waiting.id]
    assert listed(admin_client, "state=running") == [running.id]
    assert listed(admin_client, "state=retrying") == [retrying.id]
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(url(CHANGELIST, query="state=queued"))
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not [s for s in sql if "DISTINCT" in s]
    counts = [s for s in sql if "COUNT(" in s and "JOBS_JOB" in s]
    assert counts
    assert all("LIMIT" in s for s in counts)
    listing = [s for s in sql if 'FROM "JOBS_JOB"' in s and 'ORDER BY "JOBS_JOB"."QUEUE"' in s]
    assert listing
    assert all('"PAYLOAD"' not in s for s in listing)


@pytest.mark.django_db
def test_progress_column(admin_client: Client) -> None:
    queued(
        1, state=Job.State.RUNNING, progress_done=40, progress_total=100, progress_message="rows"
    )
    queued(2, state=Job.State.RUNNING, progress_done=7)
    content = admin_client.get(url(CHANGELIST)).content.decode()
    assert "40/100 rows" in content
    assert '<td class="field-progress">7</td>' in content


@pytest.mark.django_db
def test_paginator_caps_the_count(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.queued.admin import QueuedJobAdmin

    monkeypatch.setattr(QueuedJobAdmin, "list_per_page", 2)
    monkeypatch.setattr(
        QueuedJobAdmin,
        "get_paginator",
        lambda self, request, qs, per_page, *a: QueuedJobAdmin.paginator(qs, per_page, cap=3),
    )
    for i in range(5):
        queued(i)
    assert "more than 3 queued tasks" in admin_client.get(url(CHANGELIST)).content.decode()


@pytest.mark.django_db
def test_detail_shows_the_row_and_its_arguments(admin_client: Client) -> None:
    job = queued(7, state=Job.State.RUNNING, claimed_by="cluster-a", progress_done=1)
    content = admin_client.get(url("admin:jobs_queuedjob_change", job.id)).content.decode()
    assert "args = (7,)" in content
    assert "kwargs = {}" in content
    assert "Lock until" in content
    assert "cluster-a" in content
    assert 'id="task-progress"' in content


@pytest.mark.django_db
def test_detail_of_an_unreadable_payload_and_of_a_dead_task(admin_client: Client) -> None:
    job = queued(1, payload="garbage")
    content = admin_client.get(url("admin:jobs_queuedjob_change", job.id)).content.decode()
    assert "Unreadable payload (BadSignature" in content
    [dead] = failed_rows(1)
    assert admin_client.get(url("admin:jobs_queuedjob_change", dead.id)).status_code == 404


@pytest.mark.django_db
def test_rows_are_read_only(admin_client: Client) -> None:
    job = queued(1)
    assert admin_client.get(url("admin:jobs_queuedjob_add")).status_code == 403
    response = admin_client.post(url("admin:jobs_queuedjob_change", job.id), {"queue": "other"})
    assert Job.objects.get(id=job.id).queue == "default"
    assert "<form" not in response.content.decode().split('id="content-main"')[1]
    response = admin_client.post(url("admin:jobs_queuedjob_delete", job.id), {"post": "yes"})
    assert response.status_code == 302
    assert Job.objects.filter(id=job.id).exists()
    actions = admin_client.get(url(CHANGELIST)).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions if name] == ["cancel_selected"]


@pytest.mark.django_db
def test_cancel_needs_the_change_permission(staff: User) -> None:
    job = queued(1)
    client = Client()
    client.force_login(grant(staff, "view_queuedjob"))
    assert job.id in listed(client)
    post = {"action": "cancel_selected", "_selected_action": [job.id], "post": "yes"}
    client.post(url(CHANGELIST), post)
    assert Job.objects.get(id=job.id).state == Job.State.QUEUED
    assert client.get(url("admin:jobs_queuedjob_cancel_matching")).status_code == 403
    assert client.post(url("admin:jobs_queuedjob_cancel", job.id)).status_code == 403
    client.force_login(grant(staff, "view_queuedjob", "change_queuedjob"))
    client.post(url(CHANGELIST), post)
    assert Job.objects.get(id=job.id).state == Job.State.CANCELLED


@pytest.mark.django_db
def test_staff_without_permission_gets_403(staff: User) -> None:
    job = queued(1)
    client = Client()
    client.force_login(staff)
    assert client.get(url(CHANGELIST)).status_code == 403
    assert client.get(url("admin:jobs_queuedjob_change", job.id)).status_code == 403
    response = client.post(
        url(CHANGELIST), {"action": "cancel_selected", "_selected_action": [job.id]}
    )
    assert response.status_code == 403
    assert Job.objects.filter(id=job.id).exists()


@pytest.mark.django_db
def test_cancel_needs_a_csrf_token(admin_user: User) -> None:
    job = queued(1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(
        url(CHANGELIST), {"action": "cancel_selected", "_selected_action": [job.id]}
    )
    assert response.status_code == 403
    assert Job.objects.filter(id=job.id).exists()


@pytest.mark.django_db
def test_django_q_queued_page_is_gone(admin_client: Client) -> None:
    assert OrmQ not in admin.site._registry
    assert QueuedJob in admin.site._registry
    assert admin_client.get("/admin/django_q/ormq/").status_code == 404
    index = admin_client.get(url("admin:index")).content.decode()
    assert "/admin/django_q/ormq/" not in index
    assert url(CHANGELIST) in index


@pytest.mark.django_db
def test_django_q_successful_tasks_page_lists_kept_results(admin_client: Client) -> None:
    # Results are kept by default (jobs.engine.results): django-q2's own page shows them.
    now = timezone.now()
    Success.objects.create(
        id="a" * 32, name="kept-result", func="tests.support.broker.noop",
        started=now, stopped=now, success=True, result=1,
    )  # fmt: skip
    assert Success in admin.site._registry
    page = admin_client.get("/admin/django_q/success/")
    assert page.status_code == 200
    assert "kept-result" in page.content.decode()
    assert "/admin/django_q/success/" in admin_client.get(url("admin:index")).content.decode()
