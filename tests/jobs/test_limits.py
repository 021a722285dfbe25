"""Flow control in the claim (jobs.engine.limits, transitions.claim_limited): a task over a
limit is simply not claimed, the next eligible one is, and no attempt is used."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from django_q.models import Task
from django_q.signing import SignedPackage

from jobs.engine import backend, limits, registry, transitions
from jobs.engine.worker import Worker
from jobs.models import Job, RateStart, WorkerNode
from tests.support import limits as limited_jobs  # noqa: F401 (declares the jobs)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db

LOG = "/dev/null"


def live_node(name: str = "here") -> int:
    now = timezone.now()
    return WorkerNode.objects.create(
        cluster="limits", host=name, pid=4242, process_key="", started_at=now, last_beat_at=now
    ).id


def enqueue(name: str, *args: object, n: int = 1, **kwargs: object) -> list[str]:
    return [registry.enqueue(name, *args, on_commit=False, **kwargs) for _ in range(n)]


def queue() -> str:
    return Job.objects.values_list("queue", flat=True).first() or ""


def claim(node: int, *, by: str = "w", limit: int = 10, queue_limit: int | None = None):
    return transitions.claim_limited(
        alias="default", queue=queue(), node=node, by=by, limit=limit, queue_limit=queue_limit
    )


def claim_until_empty(node: int, *, queue_limit: int | None = None) -> list[int]:
    """Claim as many workers would, one claim after another, until nothing more comes."""
    taken: list[int] = []
    for i in range(50):
        got = claim(node, by=f"w{i}", queue_limit=queue_limit).claimed
        if not got:
            break
        taken += [c.row_id for c in got]
    return taken


def assert_claims_run_one_after_the_other() -> None:
    """SQLite: every claim is one BEGIN IMMEDIATE transaction, which takes the database's
    single write lock before it reads, so there is no concurrent claim to test."""
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def running(name: str) -> int:
    return Job.objects.filter(job_name=name, state=Job.State.RUNNING).count()


def test_the_row_carries_its_limits_from_the_declaration() -> None:
    enqueue("tests.limited_per_key", LOG, "tablo-1")
    enqueue("tests.rated", LOG)
    per_key, rated = Job.objects.order_by("id")
    assert (per_key.limit_key, per_key.limit_max) == ("tests.limited_per_key:tablo-1", 3)
    assert (per_key.rate_key, per_key.rate_max) == (None, None)
    assert (rated.rate_key, rated.rate_max, rated.rate_seconds) == ("tests.rated", 20, 4.0)
    assert rated.limit_key is None


def test_a_concurrency_limit_holds_over_every_claim_and_leaves_the_rest_queued() -> None:
    enqueue("tests.limited", LOG, n=8)
    me = live_node()
    taken = claim_until_empty(me)
    assert len(taken) == 3
    assert running("tests.limited") == 3
    # Left alone: still queued, no attempt used.
    waiting = Job.objects.exclude(id__in=taken)
    assert [(j.state, j.attempt) for j in waiting] == [(Job.State.QUEUED, 0)] * 5


def test_a_binding_limit_is_spread_one_task_per_claim() -> None:
    enqueue("tests.limited", LOG, n=8)
    me = live_node()
    assert [len(claim(me, by=f"w{i}").claimed) for i in range(4)] == [1, 1, 1, 0]


def test_a_loose_limit_lets_one_claim_take_a_batch() -> None:
    enqueue("tests.loose", LOG, n=12)
    assert len(claim(live_node()).claimed) == 10


def test_a_finished_or_failed_task_frees_its_slot() -> None:
    enqueue("tests.limited", LOG, n=5)
    me = live_node()
    first, *_ = claim_until_empty(me)
    attempt = transitions.start(alias="default", row_id=first, node=me)
    assert attempt == 1
    done = transitions.finish("default", [(first, attempt)], {}, owner=me)
    assert done == {(first, attempt)}
    assert [c.row_id for c in claim(me).claimed] != []
    assert running("tests.limited") == 3


@pytest.mark.parametrize("with_results", [False, True])
def test_a_finish_names_the_queue_of_a_full_key_once_and_of_no_other(with_results) -> None:
    enqueue("tests.limited", LOG, n=4)  # concurrency=3: full once three run
    enqueue("tests.loose", LOG, n=2)  # concurrency=1000: far from it
    me = live_node()
    claimed = [c for i in range(5) for c in claim(me, by=f"w{i}").claimed]
    keys = dict(Job.objects.filter(state=Job.State.RUNNING).values_list("id", "limit_key"))
    full = [(c.row_id, c.attempt) for c in claimed if keys[c.row_id] == "tests.limited"]
    loose = [(c.row_id, c.attempt) for c in claimed if keys[c.row_id] == "tests.loose"]
    assert (len(full), len(loose)) == (3, 2)
    packages = {
        (c.row_id, c.attempt): SignedPackage.loads(c.payload)
        | {"success": True, "result": None, "stopped": timezone.now(), "attempt": 1}
        for c in claimed
    }

    def finish(acks: list[tuple[int, int]]) -> set[str]:
        freed: set[str] = set()
        tasks = {ack: packages[ack] for ack in acks} if with_results else {}
        assert transitions.finish("default", acks, tasks, owner=me, freed=freed) == set(acks)
        return freed

    # Two slots of the full key and one of the loose key in one batch: its queue, once
    # (to be woken; SQLite has no NOTIFY, its workers poll).
    woken = {queue()} if connection.vendor == "postgresql" else set()
    assert finish([*full[:2], loose[0]]) == woken
    # The key is below its limit now: no claimer waits on it, nor on the loose one.
    assert finish([full[2], loose[1]]) == set()
    assert Task.objects.count() == (5 if with_results else 0)


def test_per_key_limits_count_each_key_apart() -> None:
    enqueue("tests.limited_per_key", LOG, "a", n=5)
    enqueue("tests.limited_per_key", LOG, "b", n=5)
    me = live_node()
    claim_until_empty(me)
    keys = Job.objects.filter(state=Job.State.RUNNING).values_list("limit_key", flat=True)
    assert sorted(keys) == ["tests.limited_per_key:a"] * 3 + ["tests.limited_per_key:b"] * 3


def test_tasks_without_limits_are_claimed_past_blocked_ones() -> None:
    enqueue("tests.limited", LOG, n=6)
    enqueue("tests.unlimited", LOG, n=4)
    me = live_node()
    taken = claim_until_empty(me)
    assert running("tests.limited") == 3
    assert running("tests.unlimited") == 4
    assert len(taken) == 7


def test_the_plain_claim_never_takes_a_task_with_a_limit() -> None:
    enqueue("tests.limited", LOG, n=3)
    enqueue("tests.rated", LOG, n=3)
    enqueue("tests.unlimited", LOG, n=2)
    me = live_node()
    plain = transitions.claim(alias="default", queue=queue(), node=me, by="w", limit=10)
    assert len(plain) == 2
    assert running("tests.unlimited") == 2


def test_a_rate_limit_holds_within_its_window_and_says_when_a_start_frees() -> None:
    enqueue("tests.rated_per_key", LOG, "x", n=4)
    enqueue("tests.rated_per_key", LOG, "y", n=1)
    me = live_node()
    taken = claim_until_empty(me)
    keys = sorted(Job.objects.filter(id__in=taken).values_list("rate_key", flat=True))
    assert keys == ["tests.rated_per_key:x"] * 2 + ["tests.rated_per_key:y"]
    assert RateStart.objects.count() == 3
    held_back = claim(me)
    assert held_back.claimed == []
    assert held_back.found == 2
    assert held_back.retry_in is not None
    assert 55 < held_back.retry_in <= 60


def test_a_rate_window_slides_a_start_older_than_the_window_frees_its_place() -> None:
    enqueue("tests.rated_per_key", LOG, "x", n=3)
    me = live_node()
    assert len(claim_until_empty(me)) == 2
    oldest = RateStart.objects.order_by("started_at").first()
    RateStart.objects.filter(id=oldest.id).update(
        started_at=oldest.started_at - timezone.timedelta(seconds=61)
    )
    assert len(claim(me).claimed) == 1
    assert not RateStart.objects.filter(id=oldest.id).exists()  # pruned by the claim


def test_a_queue_limit_bounds_every_task_of_the_queue() -> None:
    enqueue("tests.unlimited", LOG, n=6)
    enqueue("tests.limited", LOG, n=2)
    me = live_node()
    assert len(claim_until_empty(me, queue_limit=4)) == 4
    assert Job.objects.filter(state=Job.State.RUNNING).count() == 4


def test_a_dead_node_claims_nothing_on_the_limited_path() -> None:
    enqueue("tests.limited", LOG, n=2)
    me = live_node()
    WorkerNode.objects.filter(id=me).update(dead_at=timezone.now())
    assert claim(me).claimed == []
    assert running("tests.limited") == 0


def test_a_dead_nodes_limited_tasks_are_handed_out_and_free_their_slots() -> None:
    enqueue("tests.limited", LOG, n=5)
    me, peer = live_node(), live_node("peer")
    claim_until_empty(me)
    with transaction.atomic():
        transitions.take_node(me, reason="node died", alias="default")
    assert running("tests.limited") == 0
    assert len(claim_until_empty(peer)) == 3


def test_operators_see_running_against_the_limit(settings) -> None:
    settings.JOBS_QUEUE_CONCURRENCY = {"reports": 4}
    enqueue("tests.limited", LOG, n=5)
    claim_until_empty(live_node())
    assert backend.limits_in_use() == [
        {"key": "tests.limited", "job": "tests.limited", "limit": 3, "running": 3, "waiting": 2},
        {"key": "queue:reports", "job": "", "limit": 4, "running": 0, "waiting": None},
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": "3"},
        {"concurrency_key": lambda: "k"},
        {"rate": (0, 1)},
        {"rate": (5, 0)},
        {"rate": 5},
        {"rate_key": lambda: "k"},
    ],
)
def test_a_bad_limit_is_refused_where_the_job_is_declared(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"tests\.bad"):
        registry.job("tests.bad", **options)(lambda: None)


@pytest.mark.django_db(transaction=True)
def test_two_claimers_cannot_both_take_the_last_slot() -> None:
    """The second claim waits for the first one's commit, then counts it."""
    if connection.vendor != "postgresql":
        assert_claims_run_one_after_the_other()
        return
    # More than a claim locks as candidates: the second claim finds some and needs the key.
    enqueue("tests.limited", LOG, n=limits.SCAN + 8)
    first_node, second_node = live_node("one"), live_node("two")
    for i in range(2):  # two of the three slots taken and committed
        claim(first_node, by=f"w{i}")
    q = queue()
    hold = threading.Event()
    outcome: dict[str, object] = {}

    def claimer(name: str, node: int, *, keep_open: bool) -> None:
        try:
            with transaction.atomic():
                got = transitions.claim_limited(
                    alias="default", queue=q, node=node, by=name, limit=10, queue_limit=None
                )
                outcome[name] = [c.row_id for c in got.claimed]
                if keep_open:
                    hold.wait(30)
        finally:
            connections.close_all()

    first = threading.Thread(target=claimer, args=("first", first_node), kwargs={"keep_open": True})
    first.start()
    wait_until(lambda: "first" in outcome, timeout=10, what="the first claim")
    second = threading.Thread(
        target=claimer, args=("second", second_node), kwargs={"keep_open": False}
    )
    second.start()

    def second_waits_for_the_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            return cursor.fetchone()[0] == 1

    wait_until(second_waits_for_the_lock, timeout=10, what="the second claim to wait")
    hold.set()
    first.join(10)
    second.join(10)
    assert len(outcome["first"]) == 1
    assert outcome["second"] == []
    assert running("tests.limited") == 3


@pytest.mark.django_db(transaction=True)
def test_claimers_of_a_key_far_from_its_limit_do_not_queue_behind_each_other() -> None:
    """A limit out of reach of every live worker at once is claimed under a shared lock."""
    if connection.vendor != "postgresql":
        assert_claims_run_one_after_the_other()
        return
    enqueue("tests.loose", LOG, n=limits.SCAN * 2)
    first_node, second_node = live_node("one"), live_node("two")
    q = queue()
    release = threading.Event()
    outcome: dict[str, list[int]] = {}

    def claimer(name: str, node: int, *, keep_open: bool) -> None:
        try:
            with transaction.atomic():
                got = transitions.claim_limited(
                    alias="default", queue=q, node=node, by=name, limit=10, queue_limit=None
                )
                outcome[name] = [c.row_id for c in got.claimed]
                if keep_open:
                    release.wait(30)
        finally:
            connections.close_all()

    first = threading.Thread(target=claimer, args=("first", first_node), kwargs={"keep_open": True})
    first.start()
    try:
        wait_until(lambda: "first" in outcome, timeout=10, what="the first claim")
        second = threading.Thread(
            target=claimer, args=("second", second_node), kwargs={"keep_open": False}
        )
        second.start()
        # Done while the first claim's transaction is still open: it did not wait.
        wait_until(lambda: "second" in outcome, timeout=10, what="the second claim")
    finally:
        release.set()
        first.join(10)
    second.join(10)
    assert len(outcome["first"]) == limits.LOOSE
    assert len(outcome["second"]) == limits.LOOSE
    assert not set(outcome["first"]) & set(outcome["second"])


def test_healthz_shows_running_against_each_limit(client) -> None:
    enqueue("tests.limited_per_key", LOG, "a", n=4)
    claim_until_empty(live_node())
    assert client.get("/healthz").json()["limits"] == [
        {"key": "tests.limited_per_key:a", "job": "tests.limited_per_key", "limit": 3,
         "running": 3, "waiting": 1},
    ]  # fmt: skip


def test_a_rated_tasks_start_moves_its_place_in_the_window_to_when_it_started() -> None:
    enqueue("tests.rated", LOG)
    me = live_node()
    [claimed] = claim(me).claimed
    assert claimed.rated
    counted_at = RateStart.objects.get(job=claimed.row_id).started_at
    assert transitions.start(alias="default", row_id=claimed.row_id, node=me, rated=True) == 1
    assert RateStart.objects.get(job=claimed.row_id).started_at > counted_at


@pytest.mark.django_db(transaction=True)
def test_a_worker_claims_plainly_while_no_task_with_a_limit_is_ready(monkeypatch) -> None:
    enqueue("tests.unlimited", LOG, n=3)
    worker = Worker(queue=queue(), node=live_node(), bulk=1)
    heavy = []
    original = transitions.claim_limited
    monkeypatch.setattr(
        transitions, "claim_limited", lambda **kw: heavy.append(kw) or original(**kw)
    )
    assert worker.claim() == 1  # a new worker looks for limited tasks once
    worker.gate.next_at = 0.0  # and again when its gate is due:
    assert worker.claim() == 1  # a probe of the index finds none: the plain claim
    assert len(heavy) == 1
    enqueue("tests.limited", LOG)
    worker.gate.next_at = 0.0
    assert worker.claim() == 1
    assert len(heavy) == 2
    assert running("tests.limited") == 1
