"""Peer benchmark: Tablo against stock django-q2, pgqueuer, Celery and procrastinate.

One command, one run, the same workload for every peer (``benchmarks/peers/phases.py``),
each peer in its own virtualenv and processes with 2 workers:

1. enqueue cost, one task at a time from the producer (as a web view would), p50/p99
2. idle pickup, enqueue -> task start with the queue empty each time, p50/p99
3. drain of N no-op tasks already queued, rounds interleaved across peers
   (round 1 of every peer, then round 2, ...): min/median/max tasks/s, and the
   worker processes' user+sys CPU per task (/proc) while draining
4. 500 tasks/s offered for 30 s: achieved and completed rate, p99 enqueue -> start

    .venv/bin/python benchmarks/peer_bench.py --quick                # a few minutes
    .venv/bin/python benchmarks/peer_bench.py --json var/peers.json  # full, ~20 min
    .venv/bin/python benchmarks/peer_bench.py --quick --peers tablo,pgqueuer

Peers' virtualenvs are made on first use under var/peers/<peer>/ from the pinned
benchmarks/requirements-<peer>.txt (Tablo and stock django-q2 run in the project's
own). Databases: bench17_<peer> on PostgreSQL (created, emptied, dropped at the end);
Celery's broker and the completion counter: Redis DB 14. Never point these at data
you keep. A peer that fails to install or run is reported in the table as failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.peers import PEERS, Peer, proc  # noqa: E402
from benchmarks.peers.report import BASELINE, drain_schedule, render_table, spread  # noqa: E402
from benchmarks.queue_bench import mode_env  # noqa: E402

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
DB_PREFIX = "bench17_"
# The project's defaults are what is measured: nothing from the calling shell may
# switch Tablo's broker or tune django-q2 behind the benchmark's back.
STRIPPED_ENV = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
STRIPPED_PREFIXES = ("S3_", "Q_", "JOBS_", "BENCH17_")


class PeerFailed(Exception):
    pass


# --- virtualenvs -----------------------------------------------------------------------------
def peer_python(peer: Peer, log: Path) -> str:
    """The interpreter of ``peer``'s virtualenv, made or refreshed from its pinned file."""
    if peer.requirements is None:
        return sys.executable
    requirements = BASE_DIR / peer.requirements
    venv = BASE_DIR / "var" / "peers" / peer.name
    python = venv / "bin" / "python"
    stamp = venv / ".bench17-requirements"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return str(python)
    print(f"installing {peer.name} into {venv.relative_to(BASE_DIR)} ...", flush=True)
    with log.open("ab") as out:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
        ]
        for step in steps:
            done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:]
                raise PeerFailed(f"install failed: {' '.join(tail)}")
    stamp.write_text(digest)
    return str(python)


# --- databases -------------------------------------------------------------------------------
def admin_connection(pg: str):
    import psycopg

    return psycopg.connect(f"{pg}/postgres", autocommit=True)


def database_url(pg: str, name: str) -> str:
    if not name.startswith(DB_PREFIX):  # the only databases this benchmark may touch
        raise ValueError(f"refusing database {name!r}: not {DB_PREFIX}*")
    return f"{pg}/{name}"


def create_database(pg: str, name: str) -> None:
    from psycopg import sql

    database_url(pg, name)
    with admin_connection(pg) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(pg: str, name: str) -> None:
    from psycopg import sql

    database_url(pg, name)
    with admin_connection(pg) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- one runner process -------------------------------------------------------------------------
def peer_env(peer: Peer, *, pg: str, redis_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in STRIPPED_ENV and not k.startswith(STRIPPED_PREFIXES)
    }
    env.update(PYTHONPATH=str(BASE_DIR), PYTHONUNBUFFERED="1", BENCH17_REDIS_URL=redis_url)
    if peer.database:
        env["BENCH17_DATABASE_URL"] = database_url(pg, peer.database)
    if peer.adapter == "djangoq_peer":
        env.update(mode_env(peer.name, env["BENCH17_DATABASE_URL"]))
    return env


class Runner:
    def __init__(self, *, workdir: Path, pg: str, redis_url: str) -> None:
        self.workdir = workdir
        self.pg = pg
        self.redis_url = redis_url
        self.marker = uuid.uuid4().hex
        self.pythons: dict[str, str] = {}

    def run(self, peer: Peer, phase: str, params: dict[str, Any], timeout: float) -> dict:
        """Run one phase in ``peer``'s runner; its RESULT, or PeerFailed with the reason."""
        tag = f"{peer.name}-{phase}" + (f"{params['round']}" if "round" in params else "")
        log = self.workdir / f"{tag}.log"
        command = [
            self.pythons[peer.name],
            "-m",
            "benchmarks.peers.run",
            "--peer",
            peer.name,
            "--phase",
            phase,
            "--params",
            json.dumps(params),
            "--workdir",
            str(self.workdir),
            "--marker",
            self.marker,
        ]
        env = peer_env(peer, pg=self.pg, redis_url=self.redis_url)
        env[proc.RUN_MARKER] = self.marker
        with log.open("wb") as err:
            child = subprocess.Popen(
                command, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=err
            )
            try:
                out, _ = child.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise PeerFailed(f"{phase} timed out after {timeout:.0f} s (see {log})") from None
            finally:
                if child.poll() is None:  # timed out, or this process was interrupted
                    child.terminate()  # its finally blocks stop its workers
                    try:
                        child.wait(30)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
                self.sweep()
        lines = [x for x in out.decode().splitlines() if x.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            tail = log.read_text(errors="replace").strip().splitlines()
            reason = next((x for x in reversed(tail) if x.strip()), f"exit {child.returncode}")
            raise PeerFailed(f"{phase}: {reason.strip()[:300]} (see {log})")
        return json.loads(lines[-1][len("RESULT ") :])

    def sweep(self) -> None:
        """Whatever worker a runner left behind (it was killed): SIGKILL, by PID."""
        pids = self.workdir / "pids"
        if pids.exists():
            sessions = [int(x) for x in pids.read_text().split()]
            if proc.kill_sessions(sessions, self.marker):
                print("  (stopped leftover worker processes)", flush=True)


# --- the run ------------------------------------------------------------------------------------
def machine_info(pg: str, redis_url: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_start": os.getloadavg(),
    }
    with contextlib.suppress(Exception), admin_connection(pg) as conn:
        info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    with contextlib.suppress(Exception):
        import redis

        info["redis"] = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    with contextlib.suppress(Exception):
        info["tablo_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return info


def params_for(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    defaults = {
        "enqueue_samples": 200 if quick else 1000,
        "pickup_samples": 30 if quick else 200,
        "drain": 2000 if quick else 20000,
        # Stock django-q2 drains ~16-50 tasks/s: 20,000 would take over 10 minutes a round.
        "stock_drain": 300 if quick else 2000,
        "rounds": 1 if quick else 3,
        "seconds": 5.0 if quick else 30.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return {
        "enqueue_samples": args.enqueue_samples,
        "pickup_samples": args.pickup_samples,
        "drain": args.drain,
        "stock_drain": args.stock_drain,
        "rounds": args.rounds,
        "rate": args.rate,
        "seconds": args.seconds,
        "producers": args.producers,
        "workers": 2,
    }


def one_offs_timeout(params: dict[str, Any]) -> float:
    return (
        600
        + params["enqueue_samples"] * 0.05
        + params["pickup_samples"] * 1.0
        + (params["seconds"] * 3)
    )


def summarize(result: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    """Fold the drain rounds into the figures: min/median/max tasks/s, CPU per task
    (workers and PostgreSQL)."""
    figures = result.setdefault("figures", {})
    rates = [r["tasks_per_s"] for r in rounds if r.get("tasks_per_s")]
    cpus = [r["cpu_per_task_ms"] for r in rounds if r.get("cpu_per_task_ms") is not None]
    if rates:
        s = spread(rates)
        assert s is not None
        figures["drain_min_per_s"] = s["min"]
        figures["drain_median_per_s"] = s["median"]
        figures["drain_max_per_s"] = s["max"]
        figures["drain_tasks"] = rounds[0]["tasks"]
        figures["drain_rounds"] = len(rates)
    cpu = spread(cpus)
    if cpu is not None:
        figures["cpu_per_task_ms"] = round(cpu["median"], 3)
    pg_cpus = [r["pg_cpu_per_task_ms"] for r in rounds if r.get("pg_cpu_per_task_ms") is not None]
    pg_cpu = spread(pg_cpus)
    if pg_cpu is not None:
        figures["pg_cpu_per_task_ms"] = round(pg_cpu["median"], 3)


def label_for(peer: Peer, versions: dict[str, str]) -> str:
    main = {"stock": "django-q2", "celery": "celery"}.get(peer.name, peer.name)
    if peer.name == BASELINE or main not in versions:
        return peer.label
    return f"{peer.label} {versions[main]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers (a few minutes)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    parser.add_argument("--json", help="also write the results as JSON to this path")
    parser.add_argument("--enqueue-samples", type=int)
    parser.add_argument("--pickup-samples", type=int)
    parser.add_argument("--drain", type=int, help="no-op tasks per drain round")
    parser.add_argument("--stock-drain", type=int, help="stock django-q2's drain round")
    parser.add_argument("--rounds", type=int, help="drain rounds")
    parser.add_argument("--rate", type=float, default=500.0, help="offered tasks/s")
    parser.add_argument("--seconds", type=float, help="offered-rate duration")
    parser.add_argument("--producers", type=int, default=4, help="offering threads")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL, no database")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL (its DB is emptied)")
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args()
    params = params_for(args)
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    pg = args.pg.rstrip("/")
    if urlparse(pg).path not in ("", "/"):
        parser.error("--pg is the server's URL, without a database name")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = BASE_DIR / "var" / "peer-bench" / stamp
    workdir.mkdir(parents=True)
    print(f"logs in {workdir.relative_to(BASE_DIR)}", flush=True)
    info = machine_info(pg, args.redis)
    runner = Runner(workdir=workdir, pg=pg, redis_url=args.redis)
    results: dict[str, dict[str, Any]] = {
        n: {"label": PEERS[n].label, "figures": {}, "errors": {}, "drain": []} for n in names
    }
    active: list[str] = []
    try:
        for name in names:
            peer, result = PEERS[name], results[name]
            try:
                runner.pythons[name] = peer_python(peer, workdir / f"{name}-install.log")
                if peer.database:
                    create_database(pg, peer.database)
                print(f"{name}: setup ...", flush=True)
                setup = runner.run(peer, "setup", {}, timeout=900)
            except (PeerFailed, OSError) as exc:
                key = "install" if "install" in str(exc) else "setup"
                result["errors"][key] = str(exc)
                print(f"  {name} {key} failed: {exc}", flush=True)
                continue
            result["versions"] = setup["versions"]
            result["label"] = label_for(peer, setup["versions"])
            active.append(name)

        for name in active:
            print(f"{name}: enqueue, pickup, offered rate ...", flush=True)
            try:
                got = runner.run(PEERS[name], "one-offs", params, one_offs_timeout(params))
            except PeerFailed as exc:
                for phase in ("enqueue", "pickup", "sustained"):
                    results[name]["errors"][phase] = str(exc)
                print(f"  failed: {exc}", flush=True)
                continue
            results[name]["figures"].update(got["figures"])
            results[name]["errors"].update(got["errors"])
            for phase, error in got["errors"].items():
                print(f"  {phase} failed: {error}", flush=True)

        for round_no, name in drain_schedule(active, params["rounds"]):
            count = params["stock_drain"] if name == "stock" else params["drain"]
            print(f"drain round {round_no}: {name}, {count:,} tasks ...", flush=True)
            try:
                got = runner.run(
                    PEERS[name],
                    "drain",
                    {"count": count, "round": round_no},
                    timeout=max(120.0, count / 5) + 300,
                )
            except PeerFailed as exc:
                results[name]["errors"]["drain"] = str(exc)
                print(f"  failed: {exc}", flush=True)
                continue
            results[name]["drain"].append(got)
            print(
                f"  {got['tasks_per_s']} tasks/s, {got['cpu_per_task_ms']} ms CPU/task",
                flush=True,
            )
    finally:
        runner.sweep()
        if not args.keep_databases:
            for name in names:
                if PEERS[name].database:
                    with contextlib.suppress(Exception):
                        drop_database(pg, PEERS[name].database)

    for name in names:
        summarize(results[name], results[name]["drain"])
    info["load_avg_end"] = os.getloadavg()
    header = [
        f"Peer benchmark, {info['date']} on {info['host']}: {info['cores']} cores, "
        f"PostgreSQL {info.get('postgresql', '?')}, Redis {info.get('redis', '?')}, "
        f"Python {info['python']}, Tablo {info.get('tablo_commit', '?')}",
        "load average at start {:.2f} {:.2f} {:.2f}, at end {:.2f} {:.2f} {:.2f}".format(
            *info["load_avg_start"], *info["load_avg_end"]
        ),
        f"2 workers each; drain {params['drain']:,} no-op tasks x {params['rounds']} rounds "
        f"(stock {params['stock_drain']:,}); {params['rate']:.0f}/s offered for "
        f"{params['seconds']:.0f} s by {params['producers']} threads"
        + (" [--quick]" if args.quick else ""),
        "",
    ]
    table = render_table(results, names, header=header)
    print()
    print(table)
    if args.json:
        payload = {
            "machine": info,
            "params": params,
            "ratio": "peer / Tablo, for every figure",
            "peers": results,
            "table": table,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
