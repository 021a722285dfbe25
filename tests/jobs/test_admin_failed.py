from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_q.models import Failure, Schedule
from django_q.signing import SignedPackage

from jobs.models import FailedJob, Job
from tests.support.admin import grant, messages_of, url
from tests.support.failures import failed_rows, last_result, queue_job

CHANGELIST = "admin:jobs_failedjob_changelist"


@pytest.mark.django_db
def test_superuser_opens_every_admin_url(admin_client: Client) -> None:
    [job] = failed_rows(1)
    [unreadable] = failed_rows(1, message="bad payload")
    Job.objects.filter(id=unreadable.id).update(payload="not-a-signed-package")
    running, _ = queue_job("tests.support.failures.succeeds", 3)
    # Schedules whose last run failed (its task listed, or discarded) or succeeded: the
    # Scheduled tasks page links each to the page that exists for it.
    [discarded] = failed_rows(1)
    Job.objects.filter(id=discarded.id).delete()
    schedules = [
        Schedule.objects.create(name=f"last-{task.id}", func=task.func, task=task.id)
        for task in (
            last_result(job.task_id, success=False),
            last_result(discarded.task_id, success=False),
            last_result("s" * 32, success=True),
        )
    ]
    pages = [url("admin:index"), url("admin:app_list", "jobs"), url("admin:app_list", "django_q")]
    for model, _ in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        pages.append(url("admin:{}_{}_changelist".format(*info)))
    pages += [
        url(CHANGELIST, query="state=dead"),
        url(CHANGELIST, query="func=tests.support.failures.always_fails"),
        url(CHANGELIST, query="error_type=RuntimeError"),
        url(CHANGELIST, query="failed=24h"),
        url(CHANGELIST, query="failed=older"),
        url(CHANGELIST, query="q=boom"),
        url(CHANGELIST, query="signature=RuntimeError%3A+boom+%23"),
        url("admin:jobs_failedjob_groups", query="failed=any"),
        url("admin:jobs_failedjob_groups", query="failed=7d&state=dead"),
        url("admin:jobs_failedjob_retry_matching", query="state=dead"),
        url("admin:jobs_failedjob_discard_matching"),
        url("admin:jobs_failedjob_change", job.id),
        url("admin:jobs_failedjob_change", unreadable.id),
        url("admin:jobs_queuedjob_changelist", query="state=running"),
        url("admin:jobs_queuedjob_change", running.id),
        url("admin:django_q_schedule_change", schedules[0].id),
        url("admin:django_q_success_change", "s" * 32),
        url("admin:jobs_task_change", job.task_id),
        url("admin:jobs_task_change", unreadable.task_id),
        url("admin:jobs_task_change", running.task_id),
        url("admin:jobs_task_change", "s" * 32),
        url("admin:jobs_task_change", discarded.task_id),
        url("admin:jobs_task_discard", job.task_id),
        url("admin:jobs_task_changelist", query="state=dead&queue=default&created=24h"),
        url("admin:jobs_task_changelist", query="arguments=x&error=boom&q=boom"),
        url("admin:jobs_task_changelist", query="created_from=2026-01-01T10%3A00"),
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page


def test_stock_failure_page_is_replaced_and_sections_are_distinct() -> None:
    from django.apps import apps

    assert Failure not in admin.site._registry
    assert FailedJob in admin.site._registry
    assert apps.get_app_config("django_q").verbose_name != apps.get_app_config("jobs").verbose_name


@pytest.mark.django_db
def test_list_columns_and_newest_first(admin_client: Client) -> None:
    failed_rows(2, message="disk full")
    Job.objects.create(task_id="n" * 32, queue="q", name="never", func="x.y", payload="")
    response = admin_client.get(url(CHANGELIST))
    content = response.content.decode()
    assert "tests.always_fails" in content
    assert "3 of 3" in content
    assert "disk full 0" in content
    assert content.index("disk full 0") < content.index("disk full 1")  # newest first
    assert "never" not in content
    assert "2 failed tasks" in content


@pytest.mark.django_db
def test_changelist_never_counts_or_distincts_the_whole_table(admin_client: Client) -> None:
    failed_rows(60)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url(CHANGELIST, query="state=dead&q=boom"))
    assert response.status_code == 200
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not [s for s in sql if "DISTINCT" in s]
    counts = [s for s in sql if "COUNT(" in s and "JOBS_JOB" in s]
    assert counts
    assert all("LIMIT" in s for s in counts)
    listing = [s for s in sql if 'FROM "JOBS_JOB"' in s and "ORDER BY" in s and "LIMIT 50" in s]
    assert listing
    assert all('"PAYLOAD"' not in s for s in listing)


@pytest.mark.django_db
def test_paginator_caps_the_count(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import jobs.failures.admin

    monkeypatch.setattr(jobs.failures.admin, "COUNT_CAP", 3)
    monkeypatch.setattr(jobs.failures.admin, "SEARCH_COUNT_CAP", 2)
    failed_rows(5)
    assert "more than 3 failed tasks" in admin_client.get(url(CHANGELIST)).content.decode()
    searched = admin_client.get(url(CHANGELIST, query="q=boom")).content.decode()
    assert "more than 2 failed tasks" in searched
    few = admin_client.get(url(CHANGELIST, query="q=boom+4")).content.decode()
    assert "1 failed task" in few


@pytest.mark.django_db
def test_filters_narrow_the_list(admin_client: Client) -> None:
    failed_rows(1, message="disk full")
    failed_rows(1, message="timeout", state=Job.State.RETRYING, error_type="OSError")
    content = admin_client.get(url(CHANGELIST, query="error_type=OSError")).content.decode()
    assert "timeout 0" in content
    assert "disk full" not in content
    content = admin_client.get(url(CHANGELIST, query="q=disk")).content.decode()
    assert "disk full 0" in content
    assert "timeout 0" not in content


@pytest.mark.django_db
def test_detail_shows_arguments_and_every_attempt(admin_client: Client) -> None:
    [job] = failed_rows(1)
    content = admin_client.get(url("admin:jobs_failedjob_change", job.id)).content.decode()
    assert "args = (&#x27;0&#x27;,)" in content
    assert 'id="attempt-3"' in content
    assert "Traceback (most recent call last)" in content
    assert "Retry now" in content


@pytest.mark.django_db
def test_detail_shows_an_unreadable_payload_as_such(admin_client: Client) -> None:
    [job] = failed_rows(1)
    Job.objects.filter(id=job.id).update(payload="garbage")
    content = admin_client.get(url("admin:jobs_failedjob_change", job.id)).content.decode()
    assert "Unreadable payload (BadSignature" in content


@pytest.mark.django_db
def test_groups_page_counts_by_signature(admin_client: Client) -> None:
    failed_rows(3, message="disk full")
    failed_rows(1, message="timeout", error_type="OSError")
    response = admin_client.get(url("admin:jobs_failedjob_groups"))
    assert response.status_code == 302
    assert response["Location"].endswith("?failed=7d")  # a bounded window by default
    content = admin_client.get(response["Location"]).content.decode()
    assert content.index("RuntimeError: disk full #") < content.index("OSError: timeout #")
    assert '<td class="count">3</td>' in content
    assert '<td class="count">1</td>' in content
    assert "failed=7d&amp;signature=RuntimeError%3A+disk+full+%23" in content


@pytest.mark.django_db
def test_search_matches_message_substring_or_exact_name_function_id(admin_client: Client) -> None:
    [disk] = failed_rows(1, message="Disk 100% full_x")
    [other] = failed_rows(1, func="tests.support.failures.custom_policy", message="other")

    def found(term: str) -> set[int]:
        response = admin_client.get(url(CHANGELIST), {"q": term})
        return {job.id for job in response.context["cl"].result_list}

    assert found("disk 100% FULL_") == {disk.id}
    assert found("100_%") == set()  # % and _ are literal, not wildcards
    assert found("FAILURES.CUSTOM") == {other.id}
    assert found(other.task_id) == {other.id}
    assert found(disk.name) == {disk.id}
    assert found("support.failures") == {disk.id, other.id}


@pytest.mark.django_db
def test_retry_one_from_the_detail_page(admin_client: Client, admin_user: User) -> None:
    [job] = failed_rows(1)
    assert admin_client.get(url("admin:jobs_failedjob_retry", job.id)).status_code == 405
    response = admin_client.post(url("admin:jobs_failedjob_retry", job.id))
    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.state, job.max_attempts) == ("queued", 6)
    assert LogEntry.objects.get(user=admin_user).action_flag == CHANGE


@pytest.mark.django_db
def test_retry_one_lands_on_the_list_even_when_the_task_already_succeeded(
    admin_client: Client,
) -> None:
    [job] = failed_rows(1)
    response = admin_client.post(url("admin:jobs_failedjob_retry", job.id))
    assert response["Location"] == url(CHANGELIST)
    Job.objects.filter(id=job.id).delete()  # the worker ran it: success deletes the row
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert messages_of(page) == [f"Retried {job}: queued to run now."]


@pytest.mark.django_db
def test_retry_one_of_a_task_no_longer_failed_warns_on_the_list(admin_client: Client) -> None:
    [job] = failed_rows(1)
    Job.objects.filter(id=job.id).update(state=Job.State.RUNNING)
    response = admin_client.post(url("admin:jobs_failedjob_retry", job.id), follow=True)
    assert response.redirect_chain == [(url(CHANGELIST), 302)]
    assert messages_of(response) == [f"Not retried {job}: it is running."]
    assert Job.objects.get(id=job.id).state == Job.State.RUNNING


@pytest.mark.django_db
def test_discard_one(admin_client: Client) -> None:
    [job] = failed_rows(1)
    response = admin_client.post(url("admin:jobs_failedjob_discard", job.id), follow=True)
    assert response.redirect_chain == [(url(CHANGELIST), 302)]
    assert messages_of(response) == [f"Discarded {job}."]
    assert not Job.objects.exists()
    assert LogEntry.objects.get().action_flag == DELETION


@pytest.mark.django_db
def test_discard_one_of_a_running_task_warns_on_the_list(admin_client: Client) -> None:
    [job] = failed_rows(1)
    Job.objects.filter(id=job.id).update(state=Job.State.RUNNING)
    response = admin_client.post(url("admin:jobs_failedjob_discard", job.id))
    assert response["Location"] == url(CHANGELIST)
    Job.objects.filter(id=job.id).delete()  # it succeeded meanwhile
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert messages_of(page) == [f"Not discarded {job}: it is running."]


@pytest.mark.django_db
def test_retry_and_discard_selected_actions(admin_client: Client, admin_user: User) -> None:
    first, second, third = failed_rows(3)
    admin_client.post(
        url(CHANGELIST),
        {"action": "retry_selected", "_selected_action": [first.id, second.id]},
    )
    assert set(Job.objects.filter(state="queued").values_list("id", flat=True)) == {
        first.id,
        second.id,
    }
    admin_client.post(
        url(CHANGELIST),
        {"action": "discard_selected", "_selected_action": [third.id], "post": "yes"},
    )
    assert not Job.objects.filter(id=third.id).exists()
    assert LogEntry.objects.filter(user=admin_user).count() == 3


@pytest.mark.django_db
def test_retry_all_matching_confirms_with_the_count(admin_client: Client) -> None:
    failed_rows(3, message="disk full")
    failed_rows(2, message="timeout")
    confirm = url("admin:jobs_failedjob_retry_matching", query="q=timeout")
    content = admin_client.get(confirm).content.decode()
    assert "Retry <strong>2</strong> failed tasks" in content
    assert Job.objects.filter(state="queued").count() == 0
    response = admin_client.post(confirm)
    assert response.status_code == 302
    assert response["Location"] == url(CHANGELIST, query="q=timeout")
    assert sorted(
        Job.objects.filter(state="queued").values_list("last_error_message", flat=True)
    ) == [
        "timeout 0",
        "timeout 1",
    ]
    assert LogEntry.objects.filter(action_flag=CHANGE).count() == 2


@pytest.mark.django_db
def test_discard_all_matching(admin_client: Client) -> None:
    failed_rows(3, message="disk full")
    failed_rows(2, message="timeout", state=Job.State.RETRYING)
    confirm = url("admin:jobs_failedjob_discard_matching", query="state=retrying")
    assert "Discard <strong>2</strong>" in admin_client.get(confirm).content.decode()
    admin_client.post(confirm)
    assert Job.objects.count() == 3
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 2


@pytest.mark.django_db
def test_staff_without_permission_gets_403(staff: User) -> None:
    [job] = failed_rows(1)
    client = Client()
    client.force_login(staff)
    for page in [
        url("admin:jobs_failedjob_change", job.id),
        url("admin:jobs_failedjob_groups"),
        url("admin:jobs_failedjob_retry_matching"),
        url("admin:jobs_failedjob_discard_matching"),
    ]:
        assert client.get(page).status_code == 403, page
    assert client.post(url("admin:jobs_failedjob_retry", job.id)).status_code == 403
    assert client.post(url("admin:jobs_failedjob_discard", job.id)).status_code == 403
    assert client.post(url("admin:jobs_failedjob_retry_matching")).status_code == 403
    assert Job.objects.get(id=job.id).state == "dead"


@pytest.mark.django_db
def test_view_permission_sees_but_cannot_act(staff: User) -> None:
    [job] = failed_rows(1)
    client = Client()
    client.force_login(grant(staff, "view_failedjob"))
    detail = client.get(url("admin:jobs_failedjob_change", job.id)).content.decode()
    assert "Retry now" not in detail
    assert client.get(url(CHANGELIST)).status_code == 200
    assert client.post(url("admin:jobs_failedjob_retry", job.id)).status_code == 403
    assert client.post(url("admin:jobs_failedjob_discard_matching")).status_code == 403
    client.post(url(CHANGELIST), {"action": "retry_selected", "_selected_action": [job.id]})
    assert Job.objects.get(id=job.id).state == "dead"


@pytest.mark.django_db
def test_change_permission_retries_but_cannot_discard(staff: User) -> None:
    [job] = failed_rows(1)
    client = Client()
    client.force_login(grant(staff, "view_failedjob", "change_failedjob"))
    assert client.post(url("admin:jobs_failedjob_discard", job.id)).status_code == 403
    assert client.post(url("admin:jobs_failedjob_retry", job.id)).status_code == 302
    assert Job.objects.get(id=job.id).state == "queued"


@pytest.mark.django_db
def test_posts_need_a_csrf_token(admin_user: User) -> None:
    [job] = failed_rows(1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(url("admin:jobs_failedjob_retry", job.id)).status_code == 403
    assert client.post(url("admin:jobs_failedjob_retry_matching")).status_code == 403
    assert Job.objects.get(id=job.id).state == "dead"


@pytest.mark.django_db
def test_schedule_run_now_enqueues_with_theschedule_arguments(
    admin_client: Client, admin_user: User
) -> None:
    from django_q.brokers import get_broker
    from django_q.models import Schedule

    schedule = Schedule.objects.create(
        name="nightly", func="tests.support.failures.succeeds", args="5"
    )
    broker = get_broker()
    before = broker.queue_size()
    response = admin_client.post(
        url("admin:django_q_schedule_changelist"),
        {"action": "run_now", "_selected_action": [schedule.id]},
    )
    assert response.status_code == 302
    assert broker.queue_size() == before + 1
    [queued] = Job.objects.filter(func="tests.support.failures.succeeds")
    assert queued.state == Job.State.QUEUED
    task = SignedPackage.loads(queued.payload)
    assert (task["args"], task["group"]) == ((5,), "nightly")
    entry = LogEntry.objects.get(user=admin_user)
    assert entry.change_message == f"Run now: enqueued task {queued.task_id}."
    assert Schedule.objects.get(id=schedule.id).next_run == schedule.next_run  # plan unchanged


def test_schedule_arguments_are_parsed_like_the_scheduler() -> None:
    from django_q.models import Schedule

    from jobs.schedules import schedule_arguments

    assert schedule_arguments(Schedule(args="5", kwargs="")) == ((5,), {})
    assert schedule_arguments(Schedule(args="1, 'a'", kwargs="x=2, y='b'")) == (
        (1, "a"),
        {"x": 2, "y": "b"},
    )
    assert schedule_arguments(Schedule(args="", kwargs="{'x': 1}")) == ((), {"x": 1})


@pytest.mark.django_db
def test_discard_on_the_detail_page_asks_first(admin_client: Client) -> None:
    [job] = failed_rows(1)
    detail = admin_client.get(url("admin:jobs_failedjob_change", job.id)).content.decode()
    discard = url("admin:jobs_failedjob_discard", job.id)
    assert f'<a href="{discard}"' in detail
    assert f'action="{discard}"' not in detail
    confirm = admin_client.get(discard)
    assert confirm.status_code == 200
    assert (
        "Discard <strong>1</strong> failed task (retrying, dead, cancelled or expired)?"
        in confirm.content.decode()
    )
    assert Job.objects.filter(id=job.id).exists()
    admin_client.post(discard)
    assert not Job.objects.filter(id=job.id).exists()


@pytest.mark.django_db
def test_discard_selected_asks_first_then_discards(admin_client: Client, admin_user: User) -> None:
    first, second, kept = failed_rows(3)
    chosen = {"action": "discard_selected", "_selected_action": [first.id, second.id]}
    confirm = admin_client.post(url(CHANGELIST), chosen)
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "Discard <strong>2</strong> failed tasks (retrying, dead, cancelled or expired)?" in body
    assert str(first) in body
    assert Job.objects.count() == 3  # nothing yet
    done = admin_client.post(url(CHANGELIST), {**chosen, "post": "yes"}, follow=True)
    assert messages_of(done) == ["Discarded 2 task(s)."]
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]
    assert LogEntry.objects.filter(user=admin_user, action_flag=DELETION).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["failedjob", "queuedjob"])
@pytest.mark.parametrize("bad_id", ["abc", "1.5", "-1", "99999999999999999999", "%C2%B2"])
def test_a_task_url_with_a_bad_id_is_a_404(admin_client: Client, page: str, bad_id: str) -> None:
    assert admin_client.get(f"/admin/jobs/{page}/{bad_id}/change/").status_code == 404
    if page == "failedjob":
        for action in ("retry", "discard"):
            assert admin_client.post(f"/admin/jobs/{page}/{bad_id}/{action}/").status_code == 404


@pytest.mark.django_db
def test_admin_dates_name_their_time_zone(admin_client: Client) -> None:
    [job] = failed_rows(1)
    listing = admin_client.get(url(CHANGELIST)).content.decode()
    assert f"{job.last_failed_at:%Y-%m-%d %H:%M} UTC" in listing
    detail = admin_client.get(url("admin:jobs_failedjob_change", job.id)).content.decode()
    assert f"{job.last_failed_at:%Y-%m-%d %H:%M:%S} UTC" in detail
