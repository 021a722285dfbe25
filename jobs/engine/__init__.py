"""The queue engine: declaring jobs, enqueueing them, and the qcluster that runs them.

Its public API, the only modules the rest of the project imports (pyproject.toml's
import-linter contract enforces it):

* ``registry``: ``@job(name, timeout=, max_attempts=, backoff=, priority=, cluster=,
  unique=, transactional=, schedule=Every(...), expires=, concurrency=, concurrency_key=,
  rate=, rate_key=)``, ``enqueue``, ``enqueue_many``, ``enqueue_batch`` (callbacks once
  every member has ended), and the lookups (``get``, ``spec_for``, ``all_jobs``);
* ``errors.DoNotRetry``, ``errors.Snooze``, ``errors.Cancelled``,
  ``progress.report_progress`` and ``progress.cancel_requested``, for the jobs themselves;
* ``broker.DatabaseBroker``: django-q2's ``broker_class``, how ``async_task()`` enqueues;
* ``supervisor.serve``: ``manage.py qcluster``, a node of worker processes;
* ``backend``: the queue as the operations see it (depth, running tasks, ``enqueue`` of
  packages built by ``registry.build_package``, which may carry their own ``priority``, an
  int, and ``run_at``, an aware datetime; operators' retry, delete and cancel);
  ``nodes``: the worker nodes;
  ``channels.notify``: wake a queue's workers;
* ``context``: the task running in this process and this process's node, and the
  finished task whose chain's next link is being enqueued (``following``);
* ``stats`` and ``results``: run counts and figures, queue depth samples, and kept
  results, with their pruning.

Everything else (``transitions``, which alone writes ``jobs.Job`` rows, ``worker``,
``execute``, ``marks``, ``listener``, ``failing``, ``rows``, ``completion``, ``limits``,
...) is the
engine's own. The engine
imports nothing of ``jobs``'s operations side (failures, queued, dashboard, health,
schedules, admin, commands) and no app; ``jobs.models`` is below both.
"""
