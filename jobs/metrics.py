"""Prometheus metrics at /metrics, read from the database on every scrape.

Every jobs figure comes from tables all processes share (the queue, ``JobStat``'s
running totals, heartbeats, pauses), so one scrape of any web process gives the
whole site's values, however many web and worker processes there are. The
collector runs a handful of small queries; nothing is kept in process memory.
The web app's request metrics (``config.request_metrics``) follow; they live in process
memory, merged across web processes when ``PROMETHEUS_MULTIPROC_DIR`` is set.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jobs.dashboard import selectors
from jobs.models import DURATION_BOUNDS, JobStat

PREFIX = "tablo"


class JobsCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        queues = selectors.queues(now=now)

        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_tasks", "Tasks in the queue by state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_queued_age_seconds",
            "Age of the oldest queued task (0 when none is queued).",
            labels=["queue"],
        )
        retrying = GaugeMetricFamily(
            f"{PREFIX}_tasks_retrying", "Tasks waiting for a retry.", labels=["queue"]
        )
        dead = GaugeMetricFamily(
            f"{PREFIX}_tasks_dead", "Tasks that gave up (dead).", labels=["queue"]
        )
        paused = GaugeMetricFamily(
            f"{PREFIX}_queue_paused", "1 while the queue is paused.", labels=["queue"]
        )
        for q in queues:
            for state in (*selectors.DEPTH_FIELDS, *selectors.ENDED_FIELDS):
                depth.add_metric([q["queue"], state], q[state])
            oldest.add_metric([q["queue"]], q["oldest_queued_age"] or 0.0)
            retrying.add_metric([q["queue"]], q["retrying"])
            dead.add_metric([q["queue"]], q["dead"])
            paused.add_metric([q["queue"]], 1 if q["paused"] else 0)
        yield from (depth, oldest, retrying, dead, paused)

        finished = CounterMetricFamily(
            f"{PREFIX}_tasks_finished",
            "Task runs finished, by job and outcome.",
            labels=["queue", "job", "outcome"],
        )
        duration = HistogramMetricFamily(
            f"{PREFIX}_task_duration_seconds", "Task run duration.", labels=["queue", "job"]
        )
        totals = (
            JobStat.objects.filter(span=JobStat.Span.TOTAL)
            .values("queue", "func")
            .annotate(
                ok=Sum("succeeded"),
                ko=Sum("failed"),
                seconds=Sum("duration_sum"),
                **{b: Sum(b) for b in JobStat.BUCKET_FIELDS},
            )
            .order_by("queue", "func")
        )
        for row in totals:
            # The bucket columns are annotated under names computed at run time.
            sums: Mapping[str, Any] = row
            labels = [row["queue"], row["func"]]
            finished.add_metric([*labels, "succeeded"], row["ok"])
            finished.add_metric([*labels, "failed"], row["ko"])
            cumulative, buckets = 0, []
            for bound, field in zip(
                (*DURATION_BOUNDS, float("inf")), JobStat.BUCKET_FIELDS, strict=True
            ):
                cumulative += sums[field]
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            duration.add_metric(labels, buckets, row["seconds"] or 0.0)
        yield from (finished, duration)

        nodes = GaugeMetricFamily(
            f"{PREFIX}_worker_nodes", "Worker nodes by state (ok: beating).", labels=["state"]
        )
        by_state: dict[str, int] = {"ok": 0, "stale": 0, "dead": 0, "stopped": 0}
        for node in selectors.worker_nodes(now=now):
            by_state[node["state"]] = by_state.get(node["state"], 0) + 1
        for state, count in sorted(by_state.items()):
            nodes.add_metric([state], count)
        yield nodes


def exposition() -> bytes:
    """The metrics in Prometheus' text format: the jobs' from the database (a registry
    of its own), then the web app's requests (``config.request_metrics``' middleware)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector())
    return generate_latest(registry) + generate_latest(web_registry())


def web_registry() -> CollectorRegistry:
    """This process's request metrics, or every web process's in multiprocess mode."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        # prometheus_client leaves this constructor unannotated.
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=settings.PROMETHEUS_MULTIPROC_DIR
        )
        return registry
    return REGISTRY


def _client_ip(request: HttpRequest) -> Any:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None


def access(request: HttpRequest) -> str:
    """ "allowed", "unauthorized" (a token would do) or "disabled" (nothing configured)."""
    token = settings.METRICS_TOKEN
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.METRICS_ALLOWED_IPS]
    if not token and not networks:
        return "disabled"
    ip = _client_ip(request)
    if ip is not None and any(ip in network for network in networks):
        return "allowed"
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
            return "allowed"
        return "unauthorized"
    return "forbidden"
