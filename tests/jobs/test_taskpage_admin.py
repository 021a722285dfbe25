from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import Job, JobAttempt
from tests.support.admin import grant, messages_of, url
from tests.support.failures import last_result
from tests.support.taskpage import CHARGE, fail, node, run_on, task_row

pytestmark = pytest.mark.django_db

SEARCH = "admin:jobs_task_changelist"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def page(client: Client, task_id: str) -> str:
    response = client.get(url("admin:jobs_task_change", task_id))
    assert response.status_code == 200
    return response.content.decode()


def text(html: str) -> str:
    """The page's visible text, one space between words."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_queued_task_page_shows_its_enqueue_and_masked_arguments(admin_client: Client) -> None:
    row = task_row(42, "tok_live_123", options={"password": "hunter2", "n": 3})
    html = page(admin_client, row.task_id)
    shown = text(html)
    assert 'id="task-state">queued' in html
    assert f"enqueued queue {row.queue}" in shown
    assert "customer_id 42" in shown
    assert "token ****" in shown
    assert "&#x27;password&#x27;: ****" in html
    assert "tok_live_123" not in html
    assert "hunter2" not in html
    assert "Trace not recorded" in shown
    assert "Retry now" not in html
    assert "Discard" not in html


def test_running_task_page_shows_the_node_and_progress(admin_client: Client) -> None:
    worker = node(host="worker-7", pid=4242)
    row = run_on(
        task_row(1, "t"),
        worker,
        progress_done=30,
        progress_total=120,
        progress_message="rows copied",
        progress_updated_at=timezone.now(),
    )
    html = page(admin_client, row.task_id)
    shown = text(html)
    assert 'id="task-state">running' in html
    assert f"by worker-7 pid 4242 (tablo), worker {row.claimed_by}" in shown
    assert '<progress max="100" value="25">' in html
    assert "30 of 120 rows copied" in shown
    assert "attempt 1 started" in shown


def test_failed_task_page_shows_each_attempt_with_its_traceback(admin_client: Client) -> None:
    row = task_row(5, "t", state=Job.State.DEAD)
    fail(row, attempt=1, message="card declined", host="w1", pid=11)
    fail(row, attempt=2, message="gateway timed out", host="w2", pid=22)
    html = page(admin_client, row.task_id)
    shown = text(html)
    assert 'id="task-state">dead' in html
    assert 'id="attempt-1"' in html
    assert 'id="attempt-2"' in html
    assert "attempt 1 failed: RuntimeError w1 pid 11 (tablo)" in shown
    assert "attempt 2 failed: RuntimeError w2 pid 22 (tablo)" in shown
    assert "RuntimeError: gateway timed out</pre>" in html  # the traceback, whole
    assert "Retry now" in html
    assert "Discard…" in html


def test_finished_task_page_reads_its_result_row(admin_client: Client) -> None:
    result = last_result("f" * 32, success=True, func=CHARGE)
    html = page(admin_client, result.id)
    assert 'id="task-state">succeeded' in html
    assert "finished result kept" in text(html)
    assert url("admin:django_q_success_change", result.id) in html


def test_a_task_that_succeeded_after_failing_shows_its_whole_history(admin_client: Client) -> None:
    row = task_row(5, "t")
    fail(row, attempt=1, message="flaky")
    JobAttempt.objects.create(task_id=row.task_id, attempt=2, func=row.func, succeeded=True)
    Job.objects.filter(id=row.id).delete()  # the engine deletes the row of a success
    html = page(admin_client, row.task_id)
    shown = text(html)
    assert 'id="task-state">succeeded' in html
    assert "attempt 1 failed: RuntimeError" in shown
    assert "attempt 2 succeeded" in shown
    assert "Not kept: the task's queue row and result are gone." in shown


def test_an_unreadable_payload_is_shown_as_such(admin_client: Client) -> None:
    row = task_row(1, "t")
    Job.objects.filter(id=row.id).update(payload="not-a-signed-package")
    html = page(admin_client, row.task_id)
    assert 'id="payload-error">Unreadable payload (BadSignature:' in html


@pytest.mark.parametrize(
    "stored",
    [{"trace": {"traceparent": TRACEPARENT, "tracestate": ""}}, {"traceparent": TRACEPARENT}],
)
def test_the_trace_id_comes_from_the_traceparent_stored_with_the_task(
    admin_client: Client, stored: dict[str, object]
) -> None:
    row = task_row(1, "t", extra=stored)
    assert 'id="task-trace"><code>4bf92f3577b34da6a3ce929d0e0e4736</code>' in page(
        admin_client, row.task_id
    )


@pytest.mark.parametrize("task_id", ["0" * 32, "x" * 33, "..%2F"])
def test_an_unknown_task_is_a_clear_404(admin_client: Client, task_id: str) -> None:
    response = admin_client.get(url("admin:jobs_task_change", task_id))
    assert response.status_code == 404
    assert "No task with the id" in response.content.decode()


def test_retry_from_the_page_queues_it_and_comes_back(admin_client: Client) -> None:
    row = task_row(1, "t", state=Job.State.DEAD)
    fail(row, attempt=4, message="boom")
    response = admin_client.post(url("admin:jobs_task_retry", row.task_id), follow=True)
    assert response.redirect_chain[-1][0] == url("admin:jobs_task_change", row.task_id)
    assert messages_of(response) == ["Retried: queued to run now."]
    assert Job.objects.get(id=row.id).state == Job.State.QUEUED
    again = admin_client.post(url("admin:jobs_task_retry", row.task_id), follow=True)
    assert messages_of(again) == ["Not retried: only a retrying or dead task can be."]


def test_discard_from_the_page_asks_first_then_keeps_the_history(admin_client: Client) -> None:
    row = task_row(1, "t", state=Job.State.RETRYING)
    fail(row, attempt=1, message="boom")
    confirm = admin_client.get(url("admin:jobs_task_discard", row.task_id))
    assert confirm.status_code == 200
    assert Job.objects.filter(id=row.id).exists()
    response = admin_client.post(url("admin:jobs_task_discard", row.task_id), follow=True)
    assert messages_of(response) == ["Discarded: removed from the queue."]
    assert not Job.objects.filter(id=row.id).exists()
    assert 'id="task-state">gone' in response.content.decode()


def cancel_link(html: str) -> str:
    found = re.search(r'<a href="([^"]+)" class="button" id="task-cancel">Cancel…</a>', html)
    assert found, "no Cancel button on the page"
    return unescape(found.group(1))


def test_cancel_from_the_page_asks_first_then_ends_a_queued_task(admin_client: Client) -> None:
    row = task_row(1, "t")
    link = cancel_link(page(admin_client, row.task_id))

    confirm = admin_client.get(link)
    assert confirm.status_code == 200
    assert f'href="{url("admin:jobs_task_change", row.task_id)}"' in confirm.content.decode()
    assert Job.objects.get(id=row.id).state == Job.State.QUEUED

    response = admin_client.post(link, {"grace": "30"}, follow=True)
    assert response.redirect_chain[-1][0] == url("admin:jobs_task_change", row.task_id)
    assert messages_of(response) == ["Cancelled 1 task."]
    job = Job.objects.get(id=row.id)
    assert job.state == Job.State.CANCELLED
    assert job.cancelled_by == "admin"
    html = response.content.decode()
    assert 'id="task-state">cancelled' in html
    assert 'id="task-cancel"' not in html


def test_cancel_from_the_page_asks_a_running_task_to_stop(admin_client: Client) -> None:
    row = run_on(task_row(1, "t"), node(host="worker-7", pid=4242))
    link = cancel_link(page(admin_client, row.task_id))

    response = admin_client.post(link, {"grace": "5"}, follow=True)

    assert messages_of(response) == [
        "Cancelled 0 tasks; asked 1 running task to stop (stopped by force after 5 s)."
    ]
    job = Job.objects.get(id=row.id)
    assert job.state == Job.State.RUNNING
    assert job.cancel_requested_at is not None
    assert job.cancel_grace == 5


def test_cancel_never_leads_back_to_another_site(admin_client: Client) -> None:
    row = task_row(1, "t")
    link = url("admin:jobs_queuedjob_cancel", row.id, query="next=https://evil.example/x")
    confirm = admin_client.get(link).content.decode()
    assert "evil.example" not in confirm.split('action="')[0]
    response = admin_client.post(link, {"grace": "0"})
    assert response.status_code == 302
    assert response["Location"] == url("admin:jobs_queuedjob_changelist")


def test_an_ended_task_or_a_viewer_gets_no_cancel_button(staff: User, client: Client) -> None:
    dead = task_row(1, "t", state=Job.State.DEAD)
    fail(dead, attempt=4, message="boom")
    queued = task_row(2, "t")
    client.force_login(grant(staff, "view_task"))
    assert 'id="task-cancel"' not in page(client, queued.task_id)
    client.force_login(grant(staff, "view_task", "change_queuedjob"))
    assert 'id="task-cancel"' not in page(client, dead.task_id)
    assert 'id="task-cancel"' in page(client, queued.task_id)


def test_retry_is_post_only(admin_client: Client) -> None:
    row = task_row(1, "t", state=Job.State.DEAD)
    assert admin_client.get(url("admin:jobs_task_retry", row.task_id)).status_code == 405


def test_staff_without_permission_gets_403_and_anonymous_the_login(
    staff: User, client: Client
) -> None:
    row = task_row(1, "t", state=Job.State.DEAD)
    assert client.get(url("admin:jobs_task_change", row.task_id)).status_code == 302
    client.force_login(staff)
    for page_url in (url("admin:jobs_task_change", row.task_id), url(SEARCH)):
        assert client.get(page_url).status_code == 403
    assert client.post(url("admin:jobs_task_retry", row.task_id)).status_code == 403


def test_view_permission_sees_the_page_without_actions(staff: User, client: Client) -> None:
    row = task_row(1, "t", state=Job.State.DEAD)
    fail(row, attempt=4, message="boom")
    client.force_login(grant(staff, "view_task"))
    html = page(client, row.task_id)
    assert "Retry now" not in html
    assert "Discard…" not in html
    assert client.post(url("admin:jobs_task_discard", row.task_id)).status_code == 403
    client.force_login(grant(staff, "view_task", "change_failedjob"))
    assert "Retry now" in page(client, row.task_id)


# --- the search page ------------------------------------------------------------------
def listed(client: Client, query: str) -> list[str]:
    response = client.get(url(SEARCH, query=query))
    assert response.status_code == 200
    return [job.task_id for job in response.context["cl"].result_list]


def test_search_filters_narrow_the_list(admin_client: Client) -> None:
    queued = task_row(101, "t")
    reports = task_row(102, "t", queue="reports")
    dead = task_row(103, "t", state=Job.State.DEAD)
    fail(dead, attempt=4, message="gateway timed out")
    running = run_on(task_row(104, "t"), node(host="w9", pid=99))
    assert listed(admin_client, "") == [t.task_id for t in (running, dead, reports, queued)]
    assert listed(admin_client, "state=dead") == [dead.task_id]
    assert listed(admin_client, "queue=reports") == [reports.task_id]
    assert listed(admin_client, f"func={CHARGE}&state=queued") == [reports.task_id, queued.task_id]
    assert listed(admin_client, f"node={running.owner}") == [running.task_id]
    assert listed(admin_client, "arguments=customer_id%3D102") == [reports.task_id]
    assert listed(admin_client, "error=timed+out") == [dead.task_id]
    assert listed(admin_client, "q=customer_id%3D101") == [queued.task_id]
    everything = [t.task_id for t in (running, dead, reports, queued)]
    assert listed(admin_client, "created=1h") == everything
    assert listed(admin_client, "created_from=2000-01-01&created_until=2000-01-02") == []


def test_rows_link_to_the_task_page(admin_client: Client) -> None:
    row = task_row(1, "t")
    html = admin_client.get(url(SEARCH)).content.decode()
    assert f'href="{url("admin:jobs_task_change", row.task_id)}"' in html


def test_a_task_id_alone_opens_its_page_even_once_finished(admin_client: Client) -> None:
    result = last_result("e" * 32, success=True)
    response = admin_client.get(url(SEARCH, query=f"q={result.id}"))
    assert response.status_code == 302
    assert response["Location"] == url("admin:jobs_task_change", result.id)


def test_bad_filter_values_are_reported_and_ignored(admin_client: Client) -> None:
    row = task_row(1, "t")
    for query in ("created_from=yesterday", "error=a%01b", "node=abc", "state=lost"):
        response = admin_client.get(url(SEARCH, query=query))
        assert response.status_code == 200, query
        assert [job.task_id for job in response.context["cl"].result_list] == [row.task_id]
        assert len(messages_of(response)) == 1, query
    # A NUL is refused by Django itself, before the page: a 400, never a 500.
    assert admin_client.get(url(SEARCH, query="q=a%00b")).status_code == 400


def test_the_search_page_never_counts_or_distincts_the_whole_table(admin_client: Client) -> None:
    task_row(1, "t")
    for query in ("state=queued&_facets=True", "arguments=customer&state=queued&_facets=True"):
        with CaptureQueriesContext(connection) as queries:
            admin_client.get(url(SEARCH, query=query))
        on_jobs = [
            q["sql"].upper() for q in queries.captured_queries if "JOBS_JOB" in q["sql"].upper()
        ]
        assert not any("DISTINCT" in sql for sql in on_jobs), query
        # Each read of the table is bounded: a capped count or match list, a page, ids.
        assert all("LIMIT" in sql or '"ID" IN (' in sql for sql in on_jobs), query


# --- links from the other lists -------------------------------------------------------
def test_every_task_list_links_to_the_task_page(admin_client: Client) -> None:
    dead = task_row(1, "t", state=Job.State.DEAD)
    fail(dead, attempt=4, message="boom")
    queued = task_row(2, "t")
    result = last_result("d" * 32, success=True)
    for list_url, task_id in (
        (url("admin:jobs_failedjob_changelist"), dead.task_id),
        (url("admin:jobs_failedjob_change", dead.id), dead.task_id),
        (url("admin:jobs_queuedjob_changelist"), queued.task_id),
        (url("admin:jobs_queuedjob_change", queued.id), queued.task_id),
        (url("admin:django_q_success_changelist"), result.id),
    ):
        html = admin_client.get(list_url).content.decode()
        assert f'href="{url("admin:jobs_task_change", task_id)}"' in html, list_url


def test_the_overview_searches_tasks(admin_client: Client) -> None:
    html = admin_client.get(url("admin:jobs_overview_changelist")).content.decode()
    assert f'<form method="get" action="{url(SEARCH)}" id="dash-search"' in html
