"""The Redis broker: the delivery contract of ``jobs.engine.broker`` with the queue in Redis.

``RedisBroker`` is ``Q_CLUSTER["broker_class"]`` when ``QUEUE_REDIS_URL`` is set.
What stays in the database: worker nodes and their heartbeats (``jobs.engine.nodes``),
pauses, schedules, the attempt history, and a ``jobs.Job`` row for each task
that has failed (the record the Failed tasks page, ``list_failed_jobs`` and the
reports read, upserted at each failure and deleted when the task succeeds).

Each state change is one Lua script (``jobs.engine.redis_scripts``): enqueue, a batch
claim that moves the tasks into the claiming node's in-flight hash, the
acknowledgement, a failure (to the delayed set by due time, or gone when dead),
and the release of a node's tasks when it dies, stops, loses a worker process or
hands back what never started. The pusher's claim, pause handling, local-queue
room and SIGTERM hand-back are ``DatabaseBroker``'s (this class extends it); an
idle pusher blocks on the queue's wake list (``BLPOP``) instead of ``LISTEN``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf, logger
from django_q.signing import SignedPackage

from jobs.engine import context, handout, redis_scripts, results
from jobs.engine.attempts import WorkerInfo, record_failure
from jobs.engine.backend import (
    ALL_STATES,
    RUNNING_FIELDS,
    FailureTarget,
    QueueBackend,
    claim_of,
    empty_depth,
)
from jobs.engine.broker import DatabaseBroker
from jobs.engine.context import AckId
from jobs.engine.rows import job_row_from_task
from jobs.models import Job, WorkerNode

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()
# Acknowledgements this process made of tasks that had failed before: the failure
# hook (same monitor process, right after) asks whether the node still held them.
_acked: dict[AckId, bool] = {}


def client() -> redis.Redis:
    """The Redis of ``Q_CLUSTER["redis"]`` (a URL or redis-py keyword arguments).

    redis-py's pool notices a fork and opens new connections in the child.
    """
    conf = Conf.REDIS
    key = conf if isinstance(conf, str) else repr(sorted((conf or {}).items()))
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            if isinstance(conf, str):
                found = redis.Redis.from_url(conf, decode_responses=True)
            else:
                found = redis.Redis(**(conf or {}), decode_responses=True)
            _clients[key] = found
        return found


def _text(value: bytes | str) -> str:
    """A value client() read: str (decode_responses), though redis-py's types allow bytes."""
    return value if isinstance(value, str) else value.decode()


def prefix() -> str:
    return f"jobs:{Conf.PREFIX}:"


class _Scripts:
    def __init__(self) -> None:
        self._by_client: dict[int, dict[str, Any]] = {}

    def __call__(self, name: str, *args: Any, using: Any = None) -> Any:
        """Run script ``name`` with ARGV ``prefix(), *args`` (``using``: a pipeline)."""
        target = using if using is not None else client()
        return self.get(name)(args=[prefix(), *args], client=target)

    def get(self, name: str) -> Any:
        scripts = self._by_client.setdefault(id(client()), {})
        if name not in scripts:
            scripts[name] = client().register_script(getattr(redis_scripts, name))
        return scripts[name]


run = _Scripts()


def _now() -> float:
    return time.time()


def _create_args(row: Job, *, created: float, attempt: int = 0) -> list[Any]:
    """``create()``'s arguments for a task, from its ``Job`` row (saved or not)."""
    return [
        row.queue,
        row.task_id,
        row.payload,
        row.priority,
        row.unique_key or "",
        row.max_attempts,
        row.func,
        row.job_name,
        row.name,
        row.timeout or "",
        created,
        attempt,
    ]


@dataclass(frozen=True)
class _Task:
    """A task as a script returned it (the fields of its hash)."""

    id: int
    task_id: str
    attempt: int
    max_attempts: int
    func: str
    job_name: str
    fields: dict[str, str]

    @classmethod
    def from_script(cls, row_id: Any, attempt: Any, flat: list[str]) -> _Task:
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return cls(
            id=int(row_id),
            task_id=fields.get("task_id", ""),
            attempt=int(attempt),
            max_attempts=int(fields.get("max_attempts") or 0),
            func=fields.get("func", ""),
            job_name=fields.get("job_name", ""),
            fields=fields,
        )


def _upsert_record(task: _Task) -> None:
    """The ``Job`` row that records a failed Redis task (``record_failure`` then updates it)."""
    f = task.fields
    created = datetime.fromtimestamp(float(f.get("created") or _now()), tz=UTC)
    timeout = int(f["timeout"]) if f.get("timeout") else None
    values = {
        "queue": f.get("queue", "")[:100],
        "name": f.get("name", "")[:139],
        "func": task.func[:256],
        "job_name": task.job_name[:100],
        "priority": int(f.get("priority") or 0),
        "payload": f.get("payload", ""),
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "timeout": timeout,
        "owner": None,
        # Redis holds the key; the record keeps it for a retry from the admin (REQUEUE).
        "unique_key": f.get("unique") or None,
    }
    Job.objects.update_or_create(
        task_id=task.task_id,
        defaults=values,
        create_defaults={**values, "created_at": created, "run_at": timezone.now()},
    )


class RedisBackend(QueueBackend):
    """Tasks in Redis; failed tasks also have a ``jobs.Job`` record (see the module)."""

    def take_node(self, node_id: int, *, reason: str) -> int:
        return self._hand_out(node_id, (), mode="dead", reason=reason)

    def hand_out_lost(self, node_id: int, acks: Sequence[AckId]) -> int:
        return self._hand_out(
            node_id, acks, mode="lost", reason="the worker process running this attempt died"
        )

    def _hand_out(self, node_id: int, acks: Sequence[AckId], *, mode: str, reason: str) -> int:
        pairs = [value for ack in acks for value in ack]
        released = [
            (_Task.from_script(row[0], row[1], row[3]), bool(row[2]))
            for row in run("RELEASE", node_id, mode, *pairs)
        ]
        if not released:
            return 0
        now = timezone.now()
        with transaction.atomic():
            handout.record_lost_attempts(
                [task for task, last in released if not last], reason=reason, alias="default"
            )
            for task, last in released:
                if last:
                    _upsert_record(task)
                    handout.record_lost_last_attempt(task, reason=reason, now=now)
        return len(released)

    def hand_back(self, node_id: int, acks: Sequence[AckId]) -> int:
        return int(run("RELEASE", node_id, "back", *[v for ack in acks for v in ack]))

    def rejoin(self, node_id: int) -> None:
        client().delete(f"{prefix()}dead:{node_id}")

    def running_counts(self, node_ids: Sequence[int]) -> dict[int, int]:
        pipe = client().pipeline(transaction=False)
        for node_id in node_ids:
            pipe.hlen(f"{prefix()}n:{node_id}")
        return {node_id: n for node_id, n in zip(node_ids, pipe.execute(), strict=True) if n}

    def enqueue(self, tasks: list[dict[str, Any]], *, queue: str) -> list[str]:
        pipe = client().pipeline(transaction=False)
        now = _now()
        for task in tasks:
            row = job_row_from_task(task, queue=queue, payload=SignedPackage.dumps(task))
            run("ENQUEUE", *_create_args(row, created=now), using=pipe)
        return [str(task_id) for _created, task_id in pipe.execute()]

    def failure_target(self, task: dict[str, Any]) -> FailureTarget | None:
        claim = claim_of(task)
        if claim is None:
            return None
        attempt, max_attempts, job_name = client().hmget(
            f"{prefix()}t:{claim[0]}", "attempt", "max_attempts", "job_name"
        )
        if attempt is None:
            return None
        return FailureTarget(
            attempt=int(attempt),
            max_attempts=int(max_attempts or 0),
            job_name=_text(job_name or ""),
        )

    def record_failure(self, *, claim: AckId | None, **fields: Any) -> bool:
        if claim is None:
            return record_failure(**fields)  # not a task of ours (sync mode): history only
        retry_at = fields.get("retry_at")
        due = "" if retry_at is None else retry_at.timestamp()
        flat = run("FAIL", context.current_node_id() or 0, *claim, due)
        if flat is None:
            return False  # the node lost this attempt: it was handed out again
        with transaction.atomic():
            _upsert_record(_Task.from_script(*claim, flat))
            return record_failure(**fields)

    def succeeded_after_failure(self, task: dict[str, Any]) -> bool:
        claim = claim_of(task)
        if claim is not None and not _acked.pop(claim, True):
            return False
        Job.objects.filter(task_id=str(task.get("id") or "")).delete()  # its failure record
        return True

    def requeue(self, budgets: dict[int, int]) -> set[int]:
        records = list(Job.objects.filter(id__in=list(budgets)))
        pipe = client().pipeline(transaction=False)
        for row in records:
            args = _create_args(row, created=row.created_at.timestamp(), attempt=row.attempt)
            args[5] = budgets[row.id]  # max_attempts
            run("REQUEUE", row.task_id, budgets[row.id], *args, using=pipe)
        return {row.id for row, taken in zip(records, pipe.execute(), strict=True) if taken}

    def remove_waiting(self, row_ids: Sequence[int]) -> set[int]:
        records = list(Job.objects.filter(id__in=list(row_ids)).values_list("id", "task_id"))
        pipe = client().pipeline(transaction=False)
        for _row_id, task_id in records:
            run("REMOVE", task_id, using=pipe)
        return {row_id for (row_id, _), gone in zip(records, pipe.execute(), strict=True) if gone}

    def running(self, *, limit: int) -> list[dict[str, Any]]:
        p = prefix()
        live = WorkerNode.objects.filter(dead_at__isnull=True, stopped_at__isnull=True)
        node_ids = list(live.values_list("id", flat=True))
        pipe = client().pipeline(transaction=False)
        for node_id in node_ids:
            pipe.hkeys(f"{p}n:{node_id}")
        held = [(n, k) for n, keys in zip(node_ids, pipe.execute(), strict=True) for k in keys]
        fields = ("task_id", "job_name", "func", "attempt", "claimed")
        for _node, key in held:
            pipe.hmget(f"{p}t:{key}", *fields)
        rows = []
        for (node_id, _key), values in zip(held, pipe.execute(), strict=True):
            task = dict(zip(fields, values, strict=True))
            if task["task_id"] is None:
                continue  # finished meanwhile
            claimed = task.pop("claimed")
            rows.append(
                {key: None for key in RUNNING_FIELDS}
                | task
                | {
                    "attempt": int(task["attempt"] or 0),
                    "claimed_at": datetime.fromtimestamp(float(claimed), tz=UTC)
                    if claimed
                    else None,
                    "claimed_by": f"node {node_id}",
                }
            )
        rows.sort(key=lambda row: row["claimed_at"] or timezone.now())
        return rows[:limit]

    def depth(
        self, queue: str | None = None, *, states: Sequence[str] = ALL_STATES
    ) -> dict[str, dict[str, Any]]:
        r, p = client(), prefix()
        queues = [queue] if queue is not None else sorted(map(_text, r.smembers(f"{p}queues")))
        figures: dict[str, dict[str, Any]] = {}
        live = WorkerNode.objects.filter(dead_at__isnull=True, stopped_at__isnull=True)
        node_ids = dict(live.values_list("id", "cluster"))
        running = self.running_counts(list(node_ids))
        for name in queues:
            entry = figures[name] = empty_depth()
            entry[Job.State.QUEUED] = r.zcard(f"{p}q:{name}:ready")
            entry[Job.State.RETRYING] = r.zcard(f"{p}q:{name}:delayed")
            entry[Job.State.RUNNING] = sum(
                n for node_id, n in running.items() if node_ids[node_id] == name
            )
            entry["oldest_queued"] = self._oldest(name)
        if Job.State.DEAD in states:  # dead tasks are only records in the database
            dead = Job.objects.filter(state=Job.State.DEAD)
            if queue is not None:
                dead = dead.filter(queue=queue)
            for name, count in _count_by_queue(dead).items():
                figures.setdefault(name, empty_depth())[Job.State.DEAD] = count
        return {name: entry for name, entry in figures.items() if any_tasks(entry)}

    def _oldest(self, queue: str) -> datetime | None:
        """Enqueue time of the oldest ready task: the first of each priority's band."""
        r, p = client(), prefix()
        ready = f"{p}q:{queue}:ready"
        firsts: list[str] = []
        for priority in r.smembers(f"{p}q:{queue}:prio"):
            low = -int(priority) * redis_scripts.SCORE_SPACING
            # Members only (no withscores), decoded: redis-py's return type covers every mode.
            firsts += r.zrangebyscore(  # type: ignore[arg-type]
                ready, low, low + redis_scripts.SCORE_SPACING - 1, 0, 1
            )
        created = [r.hget(f"{p}t:{row_id}", "created") for row_id in firsts]
        stamps = [float(c) for c in created if c]
        return datetime.fromtimestamp(min(stamps), tz=UTC) if stamps else None


def _count_by_queue(qs: Any) -> dict[str, int]:
    from django.db.models import Count

    return dict(qs.values("queue").annotate(n=Count("id")).values_list("queue", "n").order_by())


def any_tasks(entry: dict[str, Any]) -> bool:
    return any(entry[state] for state in Job.State.values)


class RedisBroker(DatabaseBroker):
    """django-q2 broker on Redis, with the database broker's contract (see the module)."""

    transient_errors = (*DatabaseBroker.transient_errors, redis.ConnectionError, redis.TimeoutError)

    backend_class = RedisBackend

    # -- plumbing -----------------------------------------------------------------
    @property
    def is_postgresql(self) -> bool:
        return False  # no LISTEN connection: the wake list does that

    def _key(self, name: str) -> str:
        return f"{prefix()}q:{self.queue}:{name}"

    # -- enqueue ------------------------------------------------------------------
    def enqueue(self, task: str) -> str | None:
        """Store the task; returns its id, or None for a duplicate unique task."""
        package = SignedPackage.loads(task)
        queue = package.get("cluster") or self.queue
        row = job_row_from_task(package, queue=queue, payload=task)
        created, _task_id = run("ENQUEUE", *_create_args(row, created=_now()))
        return row.task_id if created else None

    # -- dequeue ------------------------------------------------------------------
    def claim(self, *, bulk: int | None = None) -> list[tuple[AckId, str]]:
        """Claim up to ``bulk`` ready tasks now (no waiting) for this process's node."""
        bulk = bulk or int(Conf.BULK or 1)
        node = self._node()
        rows = run("CLAIM", self.queue, node, _now(), bulk)
        if rows == -1:
            self._claimed_while_dead(node)
            return []
        return [((int(row_id), int(attempt)), payload) for row_id, attempt, payload in rows]

    def _claimed_while_dead(self, node: int) -> None:
        """Redis says the node may not claim: right unless its dead mark outlived a
        rolled-back declaration (the database has the last word)."""
        # Otherwise a managed node rejoins at its next beat (RedisBackend.rejoin), and
        # a claim outside qcluster registers a new node.
        live = WorkerNode.objects.filter(id=node, dead_at__isnull=True, stopped_at__isnull=True)
        if live.exists():
            client().delete(f"{prefix()}dead:{node}")

    def wait(self, timeout: float) -> bool:
        """Block on the queue's wake list for up to ``timeout`` seconds."""
        try:
            woken = client().blpop([self._key("wake")], timeout=max(float(timeout or 0), 0.01))
            return woken is not None
        except redis.RedisError:
            logger.exception("Redis wait failed")
            time.sleep(min(float(timeout or 0), 1.0))
            return False

    def _ensure_listener(self) -> None:
        return None

    # -- results ------------------------------------------------------------------
    def keep_result(self, ack: AckId, task: dict[str, Any]) -> None:
        if ack[1] > 1:
            self._unbatched[ack] = task  # finished at once: see acknowledge
        else:
            super().keep_result(ack, task)

    def acknowledge(self, task_id: AckId) -> None:
        """The task succeeded: gone, if this node still holds that attempt (in batches).

        A task that failed before is finished at once: the failure hook, right after
        in this process, asks whether this node still held it.
        """
        if not isinstance(task_id, (tuple, list)) or len(task_id) != 2:
            return
        ack = (int(task_id[0]), int(task_id[1]))
        if ack[1] > 1:
            task = self._unbatched.pop(ack, None)
            self.finish_batch([ack], {ack: task} if task else {}, owner=context.current_node_id())
            return
        super().acknowledge(ack)

    def finish_batch(
        self, acks: list[AckId], tasks: dict[AckId, dict[str, Any]], *, owner: int | None
    ) -> None:
        """One script call acknowledges the batch; results only for what this node held."""
        flags = run("ACK", owner or 0, *(value for ack in acks for value in ack))
        done = [ack for ack, held in zip(acks, flags, strict=True) if held]
        for ack, held in zip(acks, flags, strict=True):
            if ack[1] > 1:
                _acked[ack] = bool(held)
        results.save_finished([tasks[ack] for ack in done if ack in tasks], self)

    def delete(self, task_id: AckId | int) -> None:
        row_id = task_id[0] if isinstance(task_id, (tuple, list)) else task_id
        task = client().hget(f"{prefix()}t:{int(row_id)}", "task_id")
        if task:
            run("REMOVE", task)

    def fail(self, task_id: AckId) -> None:
        """The payload cannot be read (bad signature, unpicklable): dead, never dropped."""
        row_id, attempt = (int(v) for v in task_id)
        flat = run("FAIL", self._node(), row_id, attempt, "")
        if flat is None:
            return
        task = _Task.from_script(row_id, attempt, flat)
        with transaction.atomic():
            _upsert_record(task)
            record_failure(
                task_id=task.task_id,
                attempt=attempt,
                error_type="UnreadablePayload",
                error_message=(
                    "the queued payload could not be decoded (bad signature or unpicklable "
                    "data): was SECRET_KEY or the cluster name changed since it was enqueued? "
                    "The task was not run."
                ),
                retry_at=None,
                worker=WorkerInfo(cluster=Conf.CLUSTER_NAME),
            )

    # -- inspection ---------------------------------------------------------------
    def queue_size(self) -> int:
        r = client()
        return int(r.zcard(self._key("ready")) + r.zcard(self._key("delayed")))

    def lock_size(self) -> int:
        depth = RedisBackend().depth(self.queue).get(self.queue, empty_depth())
        running: int = depth[Job.State.RUNNING]
        return running

    def purge_queue(self) -> int:
        return int(run("PURGE", self.queue))

    def delete_queue(self) -> int:
        return self.purge_queue()

    def ping(self) -> bool:
        return bool(client().ping())

    def info(self) -> str:
        if not self._info:
            kwargs = client().connection_pool.connection_kwargs
            where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
            self._info = f"RedisBroker {where}"
        return self._info
