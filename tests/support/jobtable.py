"""The queue as a test sees it from outside the broker's code: rows of the ``jobs.Job`` table."""

from __future__ import annotations

from collections.abc import Iterable

from jobs.models import Job


def held(node_id: int, *, started: bool | None = None) -> dict[int, int]:
    """Task key (row id) -> attempt of what the node holds (``started``: only the tasks
    it had started, or only those it had claimed and not started)."""
    rows = Job.objects.filter(owner=node_id, state=Job.State.RUNNING)
    if started is not None:
        rows = rows.filter(started_at__isnull=not started)
    return dict(rows.values_list("id", "attempt"))


def task_ids(keys: Iterable[int]) -> list[str]:
    """The django-q2 task ids of these task keys."""
    return list(Job.objects.filter(id__in=list(keys)).values_list("task_id", flat=True))


def attempts(keys: Iterable[int]) -> dict[int, int]:
    """Task key -> current attempt, for the keys still queued or running."""
    return dict(Job.objects.filter(id__in=list(keys)).values_list("id", "attempt"))


def started_again(held: dict[int, int]) -> bool:
    """Each held task finished (gone) or was claimed again as a later attempt."""
    now = attempts(held)
    return all(key not in now or now[key] > attempt for key, attempt in held.items())


def ready_attempts(task_ids: Iterable[str] | None = None) -> set[int]:
    """The attempt counters of the tasks ready to claim (of ``task_ids`` only, if given)."""
    rows = Job.objects.filter(state=Job.State.QUEUED, owner=None)
    if task_ids is not None:
        rows = rows.filter(task_id__in=list(task_ids))
    return set(rows.values_list("attempt", flat=True))


def waiting_of(task_ids: Iterable[str]) -> int:
    """How many of these tasks are queued or waiting for a retry."""
    states = [Job.State.QUEUED, Job.State.RETRYING]
    return Job.objects.filter(task_id__in=list(task_ids), state__in=states).count()


def waiting() -> int:
    """Tasks queued or waiting for a retry, in every queue."""
    from jobs.engine import stats

    figures = stats.depth().values()
    return sum(q[Job.State.QUEUED] + q[Job.State.RETRYING] for q in figures)


# What the claims below write in ``claimed_by`` (a worker writes its process name).
BY = "test"


def node(queue: str | None = None) -> int:
    """The node this process claims for (registered on first use, as outside qcluster)."""
    from django_q.conf import Conf

    from jobs.engine import nodes

    return nodes.claiming_node_id(cluster=queue or Conf.CLUSTER_NAME)


def claim_unstarted(*, bulk: int = 10, queue: str | None = None) -> list:
    """Claim ready tasks as a worker of this process would, without starting them: the
    ``transitions.Claimed`` of each (its attempt is not counted yet)."""
    return _claim(bulk=bulk, queue=queue)[1]


def claim(*, bulk: int = 10, queue: str | None = None) -> list[tuple[tuple[int, int], str]]:
    """Claim and start ready tasks as a worker of this process would: ((row id, attempt),
    payload) each. The process registers as a node of its own on its first claim."""
    from jobs.engine import transitions

    me, claimed = _claim(bulk=bulk, queue=queue)
    started = []
    for task in claimed:
        attempt = transitions.start(alias="default", row_id=task.row_id, node=me)
        if attempt is not None:
            started.append(((task.row_id, attempt), task.payload))
    return started


def _claim(*, bulk: int, queue: str | None) -> tuple[int, list]:
    from django_q.conf import Conf

    from jobs.engine import transitions

    queue = queue or Conf.CLUSTER_NAME
    me = node(queue)
    return me, transitions.claim(alias="default", queue=queue, node=me, by=BY, limit=bulk)
