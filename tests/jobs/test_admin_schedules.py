"""django-q2's Scheduled tasks page, as the project registers it (jobs/admin.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django_q.models import Schedule

from jobs.models import Job
from tests.support.admin import url
from tests.support.failures import failed_rows, last_result

CHANGELIST = "admin:django_q_schedule_changelist"


def scheduled(name: str, task_id: str | None) -> Schedule:
    return Schedule.objects.create(
        name=name, func="tests.support.failures.always_fails", task=task_id
    )


def last_run_cell(client: Client, schedule: Schedule) -> str | None:
    """The "last run" cell of the schedule's row, as the changelist renders it."""
    response = client.get(url(CHANGELIST))
    assert response.status_code == 200
    changelist = response.context["cl"]
    [row] = [r for r in changelist.result_list if r.pk == schedule.pk]
    cell = changelist.model_admin.get_last_run(row)
    return None if cell is None else str(cell)


@pytest.mark.django_db
def test_a_schedule_whose_last_run_failed_links_to_the_failed_task(admin_client: Client) -> None:
    [job] = failed_rows(1)
    last_result(job.task_id, name="nightly-failed", success=False)
    schedule = scheduled("nightly", job.task_id)
    response = admin_client.get(url(CHANGELIST))
    assert response.status_code == 200
    content = response.content.decode()
    assert f'href="{url("admin:jobs_failedjob_change", job.id)}"' in content
    assert "[nightly-failed]" in content
    assert "/admin/django_q/failure/" not in content
    assert url("admin:jobs_failedjob_change", job.id) in last_run_cell(admin_client, schedule)


@pytest.mark.django_db
def test_a_failed_last_run_whose_task_was_discarded_is_plain_text(admin_client: Client) -> None:
    [job] = failed_rows(1)
    last_result(job.task_id, name="<b>nightly</b>", success=False)
    schedule = scheduled("nightly", job.task_id)
    Job.objects.filter(id=job.id).delete()  # discarded (its result row stays until pruned)
    assert last_run_cell(admin_client, schedule) == "[<b>nightly</b>]"
    content = admin_client.get(url(CHANGELIST)).content.decode()
    assert "[&lt;b&gt;nightly&lt;/b&gt;]" in content  # escaped, and no link


@pytest.mark.django_db
def test_a_successful_last_run_links_to_the_successful_tasks_page(admin_client: Client) -> None:
    last_result("b" * 32, name="nightly-ok", success=True)
    schedule = scheduled("nightly", "b" * 32)
    cell = last_run_cell(admin_client, schedule)
    assert cell == f'<a href="{url("admin:django_q_success_change", "b" * 32)}">[nightly-ok]</a>'


@pytest.mark.django_db
def test_a_schedule_never_run_or_with_its_result_pruned_shows_nothing(
    admin_client: Client,
) -> None:
    never = scheduled("never", None)
    pruned = scheduled("pruned", "c" * 32)
    assert last_run_cell(admin_client, never) is None
    assert last_run_cell(admin_client, pruned) is None


@pytest.mark.django_db
def test_staff_who_may_only_view_schedules_gets_the_page(staff: User) -> None:
    [job] = failed_rows(1)
    last_result(job.task_id, name="nightly-failed", success=False)
    scheduled("nightly", job.task_id)
    staff.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client = Client()
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(url(CHANGELIST)).status_code == 200
