"""The queue engine: declaring jobs, enqueueing them, and the brokers that deliver them.

Its public API, what the rest of the project uses:

* ``registry``: ``@job(name, timeout=, max_attempts=, backoff=, priority=, cluster=,
  unique=, transactional=, schedule=Every(...))``, ``enqueue``, ``enqueue_many``, and the
  lookups (``get``, ``for_func``, ``spec_for``, ``all_jobs``);
* ``errors.DoNotRetry`` and ``progress.report_progress``, for the jobs themselves;
* ``broker.DatabaseBroker`` and ``redis_broker.RedisBroker``: django-q2's
  ``broker_class``, claim and acknowledgement;
* ``backend.current()``: the queue as the operations see it, whichever broker runs;
* ``nodes``: the worker nodes (register, beat, declare dead, hand out again);
* ``backoff``: the retry policy; ``attempts.record_failure``: writing a failed attempt;
* ``runtime``, ``cluster`` and ``djangoq``: what runs around each task in ``qcluster``.

The engine imports nothing of ``jobs``'s operations side (failures, queued, dashboard,
health, schedules, admin, commands) and no app; ``jobs.models`` is below both. The rule
is in docs/architecture.md and pyproject.toml (import-linter).
"""
