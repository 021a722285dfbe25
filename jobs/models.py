"""The worker's own tables.

``Job`` is the queue: one row per task that has not finished yet (queued,
running, waiting for a retry), or that ended without succeeding (dead, cancelled,
expired). ``jobs.engine.transitions`` inserts it on enqueue, claims it, deletes it when
the task succeeds, and moves it to ``retrying``, ``dead``, ``cancelled`` or ``expired``.
A task keeps its id, payload and row across every attempt and every manual retry.
``JobBatch`` counts the ends of tasks enqueued together, for their callbacks.

``JobAttempt`` is the history: one row per finished attempt (failed or not),
never overwritten. ``WorkerNode`` is one running ``qcluster`` process (the owner
of the tasks it claimed); ``WorkerHeartbeat`` is the last beat job per cluster.
``SyncedSchedule`` is what the schedule sync last wrote (``jobs.schedules``).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Job(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        RETRYING = "retrying", "retrying"
        DEAD = "dead", "dead"
        CANCELLED = "cancelled", "cancelled"
        EXPIRED = "expired", "expired"

    # States the broker may hand out. A RUNNING row belongs to its owner node
    # until that node is found dead (jobs.engine.nodes hands it out again then).
    CLAIMABLE_STATES = (State.QUEUED, State.RETRYING)
    ACTIVE_STATES = (State.QUEUED, State.RETRYING, State.RUNNING)
    # Ended without succeeding: the row is kept (like a dead one) until discarded.
    FINAL_STATES = (State.DEAD, State.CANCELLED, State.EXPIRED)
    # What the Failed tasks page, its commands and its retry/discard work on.
    FAILED_STATES = (State.RETRYING, State.DEAD, State.CANCELLED, State.EXPIRED)

    id = models.BigAutoField(primary_key=True)
    task_id = models.CharField(max_length=32, unique=True)
    queue = models.CharField(max_length=100)
    name = models.CharField(max_length=139, help_text="django-q2 task name")
    func = models.CharField(max_length=256, help_text="dotted path of the function")
    job_name = models.CharField(
        max_length=100, blank=True, default="", help_text="registry name, blank if unregistered"
    )
    priority = models.SmallIntegerField(default=0)
    payload = models.TextField(help_text="signed package, as django-q2 makes it")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    run_at = models.DateTimeField(
        default=timezone.now,
        help_text="claimable from this time; for a running task, when it was claimed",
    )
    attempt = models.PositiveIntegerField(
        default=0, help_text="attempts started so far, never reset"
    )
    max_attempts = models.PositiveIntegerField(
        default=0, help_text="the attempt number after which the task is dead"
    )
    timeout = models.PositiveIntegerField(null=True, blank=True)
    unique_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(
        max_length=255, blank=True, default="", help_text="the worker process holding it"
    )
    started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when the current attempt started; empty while claimed but not started",
    )
    owner = models.BigIntegerField(
        null=True, blank=True, help_text="the WorkerNode holding this running task"
    )

    # Flow control (jobs.engine.transitions: cancel, snooze, expire; batches).
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="not started by then: it ends expired, never run"
    )
    snoozes = models.PositiveIntegerField(
        default=0, help_text="times the task snoozed (ran again later, no attempt used)"
    )
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="when an operator asked the running task to stop"
    )
    cancelled_by = models.CharField(
        max_length=150, blank=True, default="", help_text="who cancelled it (or asked to)"
    )
    cancel_grace = models.PositiveIntegerField(
        null=True, blank=True, help_text="seconds a running task gets to stop before it is killed"
    )
    batch = models.BigIntegerField(
        null=True, blank=True, help_text="the JobBatch this task is a member of"
    )
    # Flow control (jobs.engine.limits), resolved from the job's declaration at enqueue:
    # the claim counts running rows per ``limit_key`` and recent starts per ``rate_key``.
    limit_key = models.CharField(max_length=255, null=True, blank=True)
    limit_max = models.PositiveIntegerField(null=True, blank=True)
    rate_key = models.CharField(max_length=255, null=True, blank=True)
    rate_max = models.PositiveIntegerField(null=True, blank=True)
    rate_seconds = models.FloatField(null=True, blank=True)

    # Failure summary of the latest failed attempt (details in JobAttempt).
    first_failed_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    last_error_type = models.CharField(max_length=255, blank=True, default="")
    last_error_message = models.TextField(blank=True, default="")
    error_signature = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="error type and message with ids and numbers removed, for grouping",
    )

    # Progress reported by a running job (jobs.engine.progress).
    progress_done = models.BigIntegerField(null=True, blank=True)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True, default="")
    progress_updated_at = models.DateTimeField(null=True, blank=True)

    # The arguments as "name=value" text, secrets masked (jobs.arguments.search_text),
    # for the task search; written at enqueue, never read by the engine.
    search_text = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            # jobs.engine.transitions.claim: WHERE queue = %s AND state IN claimable AND
            # run_at <= now() AND no limit ORDER BY priority DESC, run_at, id ... SKIP
            # LOCKED. Limited rows are not in it: the unlimited claim never walks them.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "run_at",
                "id",
                condition=Q(
                    state__in=["queued", "retrying"],
                    limit_key__isnull=True,
                    rate_key__isnull=True,
                ),
                name="jobs_job_claim_free_idx",
            ),
            # transitions.claim's limited path: the ready rows that have a limit.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "run_at",
                "id",
                condition=Q(state__in=["queued", "retrying"])
                & (Q(limit_key__isnull=False) | Q(rate_key__isnull=False)),
                name="jobs_job_claim_limited_idx",
            ),
            # jobs.engine.nodes: the running tasks of one node (rescue, hand-back, /healthz).
            models.Index("owner", condition=Q(state="running"), name="jobs_job_running_owner_idx"),
            # Flow control: the running tasks of a limit key, counted by every claim with
            # limits and by the finish that frees a slot. Without it the planner scans the
            # table whenever its statistics lag behind a burst of enqueued tasks.
            models.Index(
                "limit_key",
                condition=Q(state="running", limit_key__isnull=False),
                name="jobs_job_running_limit_idx",
            ),
            # Failed tasks admin and list_failed_jobs: newest failure first,
            # optionally by state, function or error signature.
            models.Index(
                models.F("last_failed_at").desc(),
                condition=Q(last_failed_at__isnull=False),
                name="jobs_job_failed_idx",
            ),
            models.Index(
                "state",
                models.F("last_failed_at").desc(),
                condition=Q(last_failed_at__isnull=False),
                name="jobs_job_failed_state_idx",
            ),
            models.Index(
                "func",
                models.F("last_failed_at").desc(),
                condition=Q(last_failed_at__isnull=False),
                name="jobs_job_failed_func_idx",
            ),
            models.Index(
                "last_error_type",
                models.F("last_failed_at").desc(),
                condition=Q(last_failed_at__isnull=False),
                name="jobs_job_failed_type_idx",
            ),
            # Group by error: counts from an index-only scan, and each group's
            # latest failure in one probe (also the signature filter's order).
            models.Index(
                "error_signature",
                models.F("last_failed_at").desc(),
                condition=Q(last_failed_at__isnull=False),
                name="jobs_job_failed_sig_idx",
            ),
            # /healthz: count and oldest per state, running
            # jobs, without scanning the whole claim index and its payloads.
            models.Index(fields=["state", "created_at"], name="jobs_job_state_created_idx"),
            # transitions.expire_due: waiting tasks past their deadline, oldest first.
            models.Index(
                "expires_at",
                condition=Q(expires_at__isnull=False, state__in=["queued", "retrying"]),
                name="jobs_job_expiry_idx",
            ),
            # The members of a batch (its admin page, cancel by batch).
            models.Index(
                "batch", "id", condition=Q(batch__isnull=False), name="jobs_job_batch_idx"
            ),
            # The task search (jobs.taskpage.selectors): newest first, over every task,
            # or one job's, or one queue's (state has the index above).
            models.Index(fields=["created_at"], name="jobs_job_created_idx"),
            models.Index(fields=["func", "created_at"], name="jobs_job_func_created_idx"),
            models.Index(fields=["queue", "created_at"], name="jobs_job_queue_created_idx"),
        ]
        constraints = [
            # jobs.engine.registry uniqueness: one active task per unique key.
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=Q(state__in=["queued", "retrying", "running"]),
                name="jobs_job_unique_active_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_name or self.func} [{self.task_id}]"


class JobBatch(models.Model):
    """Tasks enqueued together whose callbacks run once, when every member has ended.

    ``jobs.engine.transitions`` counts each member's end (succeeded, dead, cancelled,
    expired) in the same transaction as that member's final change, and enqueues the
    callbacks in the transaction that counts the last one (``finished_at``).
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    total = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    dead = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="when the last member ended"
    )
    on_success = models.CharField(max_length=256, blank=True, default="")
    on_finish = models.CharField(max_length=256, blank=True, default="")
    on_failure = models.CharField(max_length=256, blank=True, default="")
    callbacks = models.CharField(
        max_length=255, blank=True, default="", help_text="task ids of the callbacks enqueued"
    )

    class Meta:
        verbose_name = "batch"
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return self.name or f"batch {self.id}"

    @property
    def ended(self) -> int:
        return self.succeeded + self.dead + self.cancelled + self.expired

    @property
    def state(self) -> str:
        if self.finished_at is None:
            return "running"
        return "succeeded" if self.succeeded == self.total else "failed"


class JobAttempt(models.Model):
    """One finished attempt of a task. Kept after retries and after success."""

    id = models.BigAutoField(primary_key=True)
    task_id = models.CharField(max_length=32)
    attempt = models.PositiveIntegerField()
    func = models.CharField(max_length=256)
    job_name = models.CharField(max_length=100, blank=True, default="")
    succeeded = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(default=timezone.now)
    error_type = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    cluster = models.CharField(max_length=100, blank=True, default="")
    host = models.CharField(max_length=255, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            # Task detail page: every attempt of one task, in order.
            models.Index(fields=["task_id", "attempt"], name="jobs_attempt_task_idx"),
            # Retention pruning and /healthz "failed in the last hour".
            models.Index(fields=["finished_at"], name="jobs_attempt_finished_idx"),
            # The task search by worker node: the tasks a node's process ran attempts of,
            # read from the index alone (task_id as its last key column: SQLite has no INCLUDE).
            models.Index(
                fields=["host", "pid", "finished_at", "task_id"],
                name="jobs_attempt_node_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} #{self.attempt}"


class WorkerNode(models.Model):
    """One ``qcluster`` process, from its start to its end (``jobs.engine.nodes``).

    Its main process beats every few seconds; a node whose beats stopped, or whose
    process is gone from its host, is declared dead by a peer (``dead_at``) and the
    tasks it held are handed out again.
    """

    id = models.BigAutoField(primary_key=True)
    cluster = models.CharField(max_length=100, help_text="the queue it serves")
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    process_key = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="boot, pid namespace and start time of its process (tells a reused pid apart)",
    )
    started_at = models.DateTimeField(default=timezone.now)
    last_beat_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="clean shutdown")
    dead_at = models.DateTimeField(null=True, blank=True, help_text="declared dead by a peer")
    tasks_rescued = models.PositiveIntegerField(
        default=0, help_text="running tasks handed out again when it was declared dead"
    )
    workers = models.PositiveSmallIntegerField(
        default=1, help_text="worker processes that claim for it (bounds concurrent claims)"
    )

    class Meta:
        indexes = [
            # jobs.engine.nodes.rescue_dead_nodes: the nodes still counted as alive.
            models.Index(
                "last_beat_at",
                condition=Q(stopped_at__isnull=True, dead_at__isnull=True),
                name="jobs_node_live_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cluster}@{self.host}:{self.pid}"


class RateStart(models.Model):
    """One start of a rate-limited task (``Job.rate_key``): written at its claim, moved to
    its start when it starts; the claim counts these in its sliding window. Written only
    by ``jobs.engine.transitions``; pruned as windows pass."""

    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=255)
    started_at = models.DateTimeField(help_text="its claim, then its start once it starts")
    job = models.BigIntegerField(null=True, blank=True, help_text="the task's Job row id")

    class Meta:
        indexes = [
            # transitions.claim: the starts of one key within its window.
            models.Index(fields=["key", "started_at"], name="jobs_ratestart_key_idx"),
            # transitions.prune_rate_starts: whatever is older than the longest window.
            models.Index(fields=["started_at"], name="jobs_ratestart_at_idx"),
            # transitions.start: a rated task's start moves its row.
            models.Index(fields=["job"], name="jobs_ratestart_job_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.started_at:%H:%M:%S}"


class WorkerHeartbeat(models.Model):
    """The last proof of life of one worker cluster (written by the heartbeat job)."""

    cluster = models.CharField(max_length=255, unique=True)
    host = models.CharField(max_length=255, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    task_id = models.CharField(max_length=32, blank=True, default="")
    last_beat_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.cluster


# --- failures: the admin's "Failed tasks" page ---------------------------
class FailedJob(Job):
    """Tasks that failed at least once (jobs.admin shows them; no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "failed task"
        verbose_name_plural = "failed tasks"


class QueuedJob(Job):
    """Tasks waiting or running (jobs.queued.admin shows them; django-q2's OrmQ page
    reads a table the project broker never writes)."""

    class Meta:
        proxy = True
        verbose_name = "queued task"
        verbose_name_plural = "queued tasks"


class Task(Job):
    """Every task with a queue row, for the search and the task page (jobs.taskpage.admin);
    the page also shows finished tasks from their history and result."""

    class Meta:
        proxy = True
        verbose_name = "task"
        verbose_name_plural = "tasks"


class SyncedSchedule(models.Model):
    """The field values ``jobs.schedules.sync_schedules`` last wrote to a managed
    ``Schedule`` row, so that a later difference can be told apart: a row still equal
    to them means the declaration changed in code; anything else is an operator's edit."""

    name = models.CharField(max_length=100, unique=True, help_text="the schedule's name")
    values = models.JSONField(help_text="the Schedule fields the sync wrote")
    synced_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


# --- operator's view: queue pauses and the dashboard's aggregates ----------
class QueuePause(models.Model):
    """A paused queue (a cluster name): its pushers claim nothing until it is resumed.

    ``jobs.pauses`` writes it; ``jobs.engine.broker.DatabaseBroker.dequeue`` reads it.
    """

    queue = models.CharField(max_length=100, unique=True)
    paused_at = models.DateTimeField(default=timezone.now)
    paused_by = models.CharField(max_length=150, blank=True, default="", help_text="user name")

    def __str__(self) -> str:
        return self.queue


class Overview(QueuePause):
    """The admin's Jobs -> Overview page (jobs.dashboard.admin); its permissions gate the
    page (view) and pausing (change)."""

    class Meta:
        proxy = True
        verbose_name = "overview"
        verbose_name_plural = "overview"


# Upper bounds (seconds) of the duration histogram buckets in JobStat; the last
# bucket is everything slower. Fixed: Prometheus and the page both read them.
DURATION_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0)


class JobStat(models.Model):
    """Runs of one job in one queue, per minute, per hour and since ever (``span``).

    The monitors add to it in batches (``jobs.engine.stats``); minute and hour rows are
    pruned by age, the ``total`` rows (``start`` fixed) are the Prometheus counters.
    """

    class Span(models.TextChoices):
        MINUTE = "minute", "minute"
        HOUR = "hour", "hour"
        TOTAL = "total", "since the first run"

    id = models.BigAutoField(primary_key=True)
    span = models.CharField(max_length=6, choices=Span.choices)
    start = models.DateTimeField()
    queue = models.CharField(max_length=100)
    func = models.CharField(max_length=256, help_text="dotted path of the function")
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    duration_sum = models.FloatField(default=0.0, help_text="seconds, every run")
    last_failed_at = models.DateTimeField(null=True, blank=True)
    # Runs per duration bucket (DURATION_BOUNDS, then slower), not cumulative.
    d0 = models.PositiveIntegerField(default=0)
    d1 = models.PositiveIntegerField(default=0)
    d2 = models.PositiveIntegerField(default=0)
    d3 = models.PositiveIntegerField(default=0)
    d4 = models.PositiveIntegerField(default=0)
    d5 = models.PositiveIntegerField(default=0)
    d6 = models.PositiveIntegerField(default=0)
    d7 = models.PositiveIntegerField(default=0)
    d8 = models.PositiveIntegerField(default=0)
    d9 = models.PositiveIntegerField(default=0)
    d10 = models.PositiveIntegerField(default=0)
    d11 = models.PositiveIntegerField(default=0)
    d12 = models.PositiveIntegerField(default=0)

    BUCKET_FIELDS = tuple(f"d{i}" for i in range(len(DURATION_BOUNDS) + 1))

    class Meta:
        constraints = [
            # jobs.engine.stats upserts on it; the dashboard reads a span's time range through it.
            models.UniqueConstraint(
                fields=["span", "start", "queue", "func"], name="jobs_jobstat_bucket_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.func} {self.span} {self.start:%Y-%m-%d %H:%M}"


class QueueSample(models.Model):
    """Queue depth of one queue at one minute, taken by the heartbeat job (jobs.engine.stats)."""

    id = models.BigAutoField(primary_key=True)
    minute = models.DateTimeField()
    queue = models.CharField(max_length=100)
    queued = models.PositiveIntegerField(default=0)
    retrying = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)
    dead = models.PositiveIntegerField(default=0)
    oldest_queued_age = models.FloatField(null=True, blank=True, help_text="seconds")

    class Meta:
        constraints = [
            # One sample per queue and minute; the dashboard reads a time range through it.
            models.UniqueConstraint(fields=["minute", "queue"], name="jobs_queuesample_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.queue} {self.minute:%Y-%m-%d %H:%M}"
