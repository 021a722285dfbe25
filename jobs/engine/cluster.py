"""Run django-q2's cluster as a worker node (what ``manage.py qcluster`` does here).

Around django-q2's own ``Cluster``: register the node and recover the tasks of
dead predecessors before the cluster starts, beat while it runs, and at the end
either mark the node stopped (a signal stopped the cluster: exit 0) or, when the
sentinel died on its own, declare the node dead at once and fail (exit 1) so the
service manager restarts it. Every child process dies with its parent
(``jobs.engine.supervision``).
"""

from __future__ import annotations

import time

import structlog
from django.db import connections
from django_q.cluster import Cluster
from django_q.conf import Conf

from jobs.engine import inflight, nodes, supervision

logger = structlog.stdlib.get_logger("jobs.engine.cluster")

# How often the main process looks at its sentinel while the cluster runs.
_WATCH_SECONDS = 0.2


class SentinelDied(RuntimeError):
    """The cluster's sentinel exited without being asked to stop."""


def serve(*, run_once: bool = False) -> None:
    """Run the cluster until a signal stops it; raises ``SentinelDied`` otherwise."""
    orphan_safe = supervision.children_die_with_their_parent()
    node_id = nodes.register(cluster=Conf.CLUSTER_NAME or "")
    # A restarted node takes back at once what its killed predecessor held.
    nodes.rescue_dead_nodes()
    inflight.create(workers=int(Conf.WORKERS or 1))
    # The sentinel is forked next: it must not inherit this process's connection.
    connections.close_all()
    heartbeat = nodes.Heartbeat(node_id)
    cluster = Cluster()
    cluster.start()
    heartbeat.start()
    try:
        if run_once:
            cluster.stop()
        # A SIGTERM or SIGINT runs cluster.stop() in this thread (django-q2's handler).
        while not cluster.has_stopped and cluster.sentinel.is_alive():
            time.sleep(_WATCH_SECONDS)
    except BaseException:
        cluster.stop()  # never leave a sentinel behind an error of ours
        raise
    finally:
        heartbeat.stop()
    if cluster.has_stopped:
        nodes.stop(node_id)
        connections.close_all()
        return
    exitcode = cluster.sentinel.exitcode
    logger.error("cluster sentinel died", node=node_id, exitcode=exitcode)
    if orphan_safe:
        # Its children died with it: nothing of this node runs any more.
        nodes.declare_dead(node_id, why=f"its sentinel exited with code {exitcode}")
    connections.close_all()
    raise SentinelDied(f"the cluster's sentinel process exited with code {exitcode}")
