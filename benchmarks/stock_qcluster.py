"""Stock django-q2's own ``qcluster``, for the benchmarks' "stock" mode and peer.

``manage.py qcluster`` is this project's worker node (jobs/management/commands/
qcluster.py: a supervisor and worker processes that claim ``jobs.Job`` rows); it
never reads django-q2's ``OrmQ`` table. This script runs django-q2's own command
instead (``django_q.management.commands.qcluster.Command``: a Sentinel process that
forks a pusher, a monitor and the workers, on the ORM broker), with the settings the
environment names, as ``manage.py`` would (system checks included):

    DJANGO_SETTINGS_MODULE=benchmarks.queue_settings QUEUE_BENCH_MODE=stock \\
        .venv/bin/python benchmarks/stock_qcluster.py [--run-once] [-n NAME]

django-q2 logs its own ``Q Cluster <name> running.`` on the ``django-q`` logger,
which the project's LOGGING keeps at WARNING (raising it would add django-q2's
per-task INFO lines to what is measured). So once django-q2's ``Cluster.start()``
has returned (its Sentinel set ``start_event`` after forking every process) this
script prints ``READY_LINE`` itself. It refuses settings whose ``Q_CLUSTER`` names
a ``broker_class``: this project's broker is served by its own engine only.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
ARGV = [sys.executable, str(BASE_DIR / "benchmarks" / "stock_qcluster.py")]
# What the benchmarks wait for: this project's supervisor logs "Q Cluster <name>
# running." (jobs.engine.supervisor) and this script prints READY_LINE.
READY_TEXT = "running."
READY_LINE = "stock django-q2: Q Cluster {name} running."


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(BASE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.queue_settings")
    import django

    django.setup()
    from django.conf import settings

    broker = settings.Q_CLUSTER.get("broker_class")
    if broker:
        sys.exit(f"stock_qcluster: Q_CLUSTER names broker_class {broker!r}; stock django-q2 "
                 "runs the ORM broker (QUEUE_BENCH_MODE=stock)")  # fmt: skip
    from django_q.conf import Conf
    from django_q.management.commands.qcluster import Command

    # Returns once the cluster is up (or, with --run-once, stopped again); the
    # Sentinel is a non-daemon child, so this process then waits for it at exit,
    # and SIGTERM/SIGINT still reach django-q2's handler, which stops it.
    Command().run_from_argv([sys.argv[0], "qcluster", *argv])
    if multiprocessing.active_children():
        print(READY_LINE.format(name=Conf.CLUSTER_NAME), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
