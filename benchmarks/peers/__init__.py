"""The peers of benchmarks/peer_bench.py: who runs, in which virtualenv, on which database.

Importable by every peer's virtualenv: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    name: str
    label: str
    adapter: str  # module in this package with make(name) -> adapter
    # Benchmark-only pinned requirements (under benchmarks/), installed into
    # var/peers/<name>/; None: the project's own virtualenv (django-q2 as pinned
    # in requirements.txt, run with the project's settings).
    requirements: str | None
    database: str | None  # bench17_* PostgreSQL database, None when it needs none


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer("tablo", "Tablo", "djangoq_peer", None, "bench17_tablo"),
        Peer("stock", "stock django-q2", "djangoq_peer", None, "bench17_stock"),
        Peer(
            "pgqueuer",
            "pgqueuer",
            "pgqueuer_peer",
            "benchmarks/requirements-pgqueuer.txt",
            "bench17_pgqueuer",
        ),
        Peer("celery", "Celery+Redis", "celery_peer", "benchmarks/requirements-celery.txt", None),
        Peer(
            "procrastinate",
            "procrastinate",
            "procrastinate_peer",
            "benchmarks/requirements-procrastinate.txt",
            "bench17_procrastinate",
        ),
    )
}
