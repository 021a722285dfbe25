"""The queue engine: declaring jobs, enqueueing them, and the qcluster that runs them.

Its public API, the only modules the rest of the project imports (pyproject.toml's
import-linter contract enforces it):

* ``registry``: ``@job(name, timeout=, max_attempts=, backoff=, priority=, cluster=,
  unique=, transactional=, schedule=Every(...), concurrency=, concurrency_key=, rate=,
  rate_key=)``, ``enqueue``, ``enqueue_many``, and the
  lookups (``get``, ``spec_for``, ``all_jobs``);
* ``errors.DoNotRetry`` and ``progress.report_progress``, for the jobs themselves;
* ``broker.DatabaseBroker``: django-q2's ``broker_class``, how ``async_task()`` enqueues;
* ``supervisor.serve``: ``manage.py qcluster``, a node of worker processes;
* ``backend``: the queue as the operations see it (depth, running tasks, operators' retry
  and delete); ``nodes``: the worker nodes;
  ``channels.notify``: wake a queue's workers;
* ``context``: the task running in this process and this process's node;
* ``stats`` and ``results``: run counts and figures, queue depth samples, and kept
  results, with their pruning.

Everything else (``transitions``, which alone writes ``jobs.Job`` rows, ``worker``,
``execute``, ``marks``, ``listener``, ``failing``, ``rows``, ``completion``, ``limits``,
...) is the
engine's own. The engine
imports nothing of ``jobs``'s operations side (failures, queued, dashboard, health,
schedules, admin, commands) and no app; ``jobs.models`` is below both.
"""
