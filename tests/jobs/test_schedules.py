from __future__ import annotations

import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from jobs import schedules
from jobs.models import SyncedSchedule
from jobs.schedules import MANAGED_HOOK, ScheduleSpec, sync_schedules
from tests.support import runtime as support  # noqa: F401  (registers the test jobs)

pytestmark = pytest.mark.django_db


def schedule_events(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict]]:
    return [
        (r.levelno, r.msg)
        for r in caplog.records
        if r.name == "jobs.schedules" and isinstance(r.msg, dict) and "schedule" in r.msg
    ]


def recorded() -> dict[str, dict]:
    return dict(SyncedSchedule.objects.values_list("name", "values"))


def spec(name: str = "echo_every_5", **overrides: object) -> ScheduleSpec:
    values = {"name": name, "job": "tests.echo", "minutes": 5, "args": ("hi",)}
    values.update(overrides)
    return ScheduleSpec(**values)


def test_declared_schedules_are_heartbeat_cleanup_and_the_prunes(settings) -> None:
    settings.HEARTBEAT_INTERVAL_SECONDS = 60
    by_name = {s.name: s for s in schedules.declared()}
    assert set(by_name) == {
        "heartbeat",
        "orphan_cleanup",
        "prune_history",
        "prune_results",
        "vacuum_queue",
    }
    assert by_name["heartbeat"].job == "jobs.heartbeat"
    assert by_name["heartbeat"].minutes == 1
    assert by_name["orphan_cleanup"].job == "files.orphan_cleanup"
    assert by_name["orphan_cleanup"].minutes == 60
    assert (by_name["prune_results"].job, by_name["prune_results"].minutes) == (
        "jobs.prune_results",
        10,
    )
    assert by_name["prune_history"].job == "jobs.prune_history"
    assert (by_name["prune_history"].minutes, by_name["prune_history"].cron) == (None, "30 3 * * *")


def test_heartbeat_interval_is_configurable(settings) -> None:
    settings.HEARTBEAT_INTERVAL_SECONDS = 300
    [heartbeat] = [s for s in schedules.declared() if s.name == "heartbeat"]
    assert heartbeat.minutes == 5


def test_migrate_synced_the_heartbeat_row() -> None:
    # post_migrate ran while the test database was built.
    row = Schedule.objects.get(name="heartbeat")
    assert row.func == "jobs.tasks.heartbeat"
    assert row.hook == MANAGED_HOOK
    assert row.schedule_type == Schedule.MINUTES


def test_migrate_synced_the_daily_prune_history_row() -> None:
    row = Schedule.objects.get(name="prune_history")
    assert row.func == "jobs.failures.tasks.prune_history_job"
    assert row.hook == MANAGED_HOOK
    assert (row.schedule_type, row.cron, row.repeats) == (Schedule.CRON, "30 3 * * *", -1)


def test_a_cron_schedule_first_runs_at_its_next_matching_time() -> None:
    Schedule.objects.all().delete()
    before = timezone.now()
    sync_schedules(declarations=[spec("nightly", minutes=None, cron="30 3 * * *")])
    next_run = Schedule.objects.get(name="nightly").next_run
    assert (next_run.hour, next_run.minute, next_run.second) == (3, 30, 0)
    assert before < next_run <= before + timedelta(days=1)


def test_sync_creates_every_declared_schedule() -> None:
    Schedule.objects.all().delete()
    report = sync_schedules()
    assert report.skipped == {}
    assert sorted(report.created) == [
        "heartbeat",
        "orphan_cleanup",
        "prune_history",
        "prune_results",
        "vacuum_queue",
    ]


def test_sync_is_idempotent() -> None:
    Schedule.objects.all().delete()
    declarations = [spec(), spec("hourly", minutes=60, args=(), kwargs={"value": "x"})]
    first = sync_schedules(declarations=declarations)
    assert sorted(first.created) == ["echo_every_5", "hourly"]
    assert sorted(recorded()) == ["echo_every_5", "hourly"]
    synced_at = max(SyncedSchedule.objects.values_list("synced_at", flat=True))
    for _ in range(3):
        again = sync_schedules(declarations=declarations)
        assert again.created == again.updated == again.deleted == []
        assert sorted(again.unchanged) == ["echo_every_5", "hourly"]
        assert again.edited == {}
    assert Schedule.objects.count() == 2
    assert SyncedSchedule.objects.filter(synced_at__gt=synced_at).count() == 0
    row = Schedule.objects.get(name="echo_every_5")
    assert (row.func, row.args, row.minutes, row.repeats) == (
        "tests.support.runtime.echo",
        "('hi',)",
        5,
        -1,
    )
    hourly = Schedule.objects.get(name="hourly")
    assert (hourly.args, hourly.kwargs) == (None, "{'value': 'x'}")


def test_a_cron_declaration_without_croniter_is_skipped_with_the_reason(monkeypatch) -> None:
    monkeypatch.setattr(schedules, "croniter", None)
    report = sync_schedules(declarations=[spec("nightly", minutes=None, cron="0 3 * * *")])
    assert report.skipped == {"nightly": "cron schedules need the croniter package"}
    assert not Schedule.objects.filter(name="nightly").exists()


def test_a_removed_declaration_removes_its_row_only() -> None:
    Schedule.objects.all().delete()
    sync_schedules(declarations=[spec("a"), spec("b")])
    operators = Schedule.objects.create(name="by hand", func="tests.support.runtime.echo")
    report = sync_schedules(declarations=[spec("a")])
    assert report.deleted == ["b"]
    assert set(Schedule.objects.values_list("name", flat=True)) == {"a", "by hand"}
    assert Schedule.objects.filter(pk=operators.pk).exists()
    assert list(recorded()) == ["a"]  # b's record went with its row; operators' rows have none


def test_an_operator_edit_is_reported_and_restored(capsys) -> None:
    Schedule.objects.all().delete()
    sync_schedules(declarations=[spec()])
    Schedule.objects.filter(name="echo_every_5").update(minutes=30, args="('changed',)")
    report = sync_schedules(declarations=[spec()])
    assert report.edited == {
        "echo_every_5": {"minutes": [30, 5], "args": ["('changed',)", "('hi',)"]}
    }
    assert report.updated == ["echo_every_5"]
    row = Schedule.objects.get(name="echo_every_5")
    assert (row.minutes, row.args) == (5, "('hi',)")


def test_a_declaration_changed_in_code_is_updated_not_reported_as_an_edit(caplog) -> None:
    caplog.set_level(logging.INFO)
    Schedule.objects.all().delete()
    sync_schedules(declarations=[spec("prune", minutes=1440)])
    report = sync_schedules(declarations=[spec("prune", minutes=None, cron="30 3 * * *")])
    assert report.updated == ["prune"]
    assert report.edited == {}
    row = Schedule.objects.get(name="prune")
    assert (row.schedule_type, row.minutes, row.cron) == (Schedule.CRON, None, "30 3 * * *")
    assert recorded()["prune"]["cron"] == "30 3 * * *"
    assert [(level, event["event"]) for level, event in schedule_events(caplog)] == [
        (logging.INFO, "schedule declaration changed")
    ]
    [(_, event)] = schedule_events(caplog)
    assert event["changes"] == {
        "schedule_type": ["I", "C"],
        "minutes": ["1440", "None"],
        "cron": ["None", "30 3 * * *"],
    }


def test_an_edit_in_the_admin_is_reported_and_restored_with_a_warning(caplog) -> None:
    caplog.set_level(logging.INFO)
    Schedule.objects.all().delete()
    sync_schedules(declarations=[spec()])
    row = Schedule.objects.get(name="echo_every_5")
    row.minutes = 30
    row.save()  # as the admin's change form does
    report = sync_schedules(declarations=[spec()])
    assert report.edited == {"echo_every_5": {"minutes": [30, 5]}}
    assert Schedule.objects.get(name="echo_every_5").minutes == 5
    assert recorded()["echo_every_5"]["minutes"] == 5
    assert [(level, event["event"]) for level, event in schedule_events(caplog)] == [
        (logging.WARNING, "managed schedule was edited; restored from code")
    ]
    assert sync_schedules(declarations=[spec()]).unchanged == ["echo_every_5"]


def test_an_edit_is_reported_even_when_the_declaration_changed_too() -> None:
    Schedule.objects.all().delete()
    sync_schedules(declarations=[spec()])
    Schedule.objects.filter(name="echo_every_5").update(args="('changed',)")
    report = sync_schedules(declarations=[spec(minutes=10)])
    assert report.edited == {
        "echo_every_5": {"minutes": [5, 10], "args": ["('changed',)", "('hi',)"]}
    }
    row = Schedule.objects.get(name="echo_every_5")
    assert (row.minutes, row.args) == (10, "('hi',)")


def test_a_managed_row_synced_before_records_existed_is_recorded_when_unchanged() -> None:
    Schedule.objects.all().delete()
    sync_schedules(declarations=[spec()])
    SyncedSchedule.objects.all().delete()
    assert sync_schedules(declarations=[spec()]).unchanged == ["echo_every_5"]
    assert recorded()["echo_every_5"]["minutes"] == 5
    report = sync_schedules(declarations=[spec(minutes=10)])
    assert (report.updated, report.edited) == (["echo_every_5"], {})


def test_a_differing_managed_row_with_nothing_recorded_counts_as_an_edit() -> None:
    Schedule.objects.all().delete()
    sync_schedules(declarations=[spec()])
    SyncedSchedule.objects.all().delete()
    report = sync_schedules(declarations=[spec(minutes=10)])
    assert report.edited == {"echo_every_5": {"minutes": [5, 10]}}
    assert recorded()["echo_every_5"]["minutes"] == 10


def test_a_row_made_by_hand_with_a_declared_name_is_adopted() -> None:
    Schedule.objects.all().delete()
    Schedule.objects.create(name="echo_every_5", func="tests.support.runtime.echo", minutes=9)
    Schedule.objects.create(name="echo_every_5", func="tests.support.runtime.echo", minutes=9)
    report = sync_schedules(declarations=[spec()])
    assert report.edited == {}  # not ours before: adopting it is no edit
    assert report.updated == ["echo_every_5"]
    assert report.deleted == ["echo_every_5"]  # the duplicate
    assert recorded()["echo_every_5"]["hook"] == MANAGED_HOOK
    row = Schedule.objects.get(name="echo_every_5")
    assert (row.hook, row.minutes) == (MANAGED_HOOK, 5)


def test_a_declaration_of_an_unregistered_job_is_skipped() -> None:
    Schedule.objects.all().delete()
    report = sync_schedules(declarations=[spec("later", job="nope.not_yet")])
    assert report.skipped == {"later": "job 'nope.not_yet' is not registered"}
    assert not Schedule.objects.exists()


def test_a_declaration_needs_exactly_one_period() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ScheduleSpec(name="x", job="tests.echo")
    with pytest.raises(ValueError, match="exactly one"):
        ScheduleSpec(name="x", job="tests.echo", minutes=1, cron="* * * * *")


def test_command_reports_and_is_idempotent() -> None:
    Schedule.objects.filter(name="heartbeat").delete()
    out, err = StringIO(), StringIO()
    call_command("sync_schedules", stdout=out, stderr=err)
    assert "created: heartbeat" in out.getvalue()
    out = StringIO()
    call_command("sync_schedules", "--json", stdout=out, stderr=StringIO())
    report = json.loads(out.getvalue())
    assert report["created"] == []
    assert "heartbeat" in report["unchanged"]
    assert Schedule.objects.filter(name="heartbeat").count() == 1


def test_command_warns_about_an_edit() -> None:
    call_command("sync_schedules", stdout=StringIO(), stderr=StringIO())
    Schedule.objects.filter(name="heartbeat").update(minutes=7)
    out, err = StringIO(), StringIO()
    call_command("sync_schedules", stdout=out, stderr=err)
    assert "warning: schedule 'heartbeat' was edited (minutes: 7 -> 1); restored" in err.getvalue()
    assert "updated: heartbeat" in out.getvalue()


def test_command_reports_a_changed_declaration_without_a_warning(settings) -> None:
    settings.HEARTBEAT_INTERVAL_SECONDS = 60
    call_command("sync_schedules", stdout=StringIO(), stderr=StringIO())
    settings.HEARTBEAT_INTERVAL_SECONDS = 120  # the heartbeat declaration now says 2 minutes
    out, err = StringIO(), StringIO()
    call_command("sync_schedules", stdout=out, stderr=err)
    assert "updated: heartbeat" in out.getvalue()
    assert err.getvalue() == ""
    assert Schedule.objects.get(name="heartbeat").minutes == 2
