"""Worker processes of a peer: start, wait until up, CPU used, stop by PID.

Each worker command starts in its own session (``start_new_session``), so every
process it forks carries that session id: this project's ``manage.py qcluster``
supervisor and its worker processes (each leads a process group of its own, in the
same session), stock django-q2's Sentinel, pusher, monitor and workers
(benchmarks/stock_qcluster.py), Celery's prefork children. Its CPU is the sum over
the session, and stopping it can reach every child by PID. Every process also
carries ``BENCH17_RUN`` in its environment, and nothing is signalled without it:
other people's qcluster processes on this machine are never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RUN_MARKER = "BENCH17_RUN"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class WorkerSpec:
    """How to start one worker process, and the text its output shows once it is up."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ready_text: str | None = None


def parse_stat(text: str) -> tuple[int, int]:
    """(session id, CPU ticks) from a /proc/<pid>/stat line.

    The ticks are the process's own user + system time plus that of its children
    it has reaped (cutime + cstime): a worker process recycled during the drain
    (both clusters replace one after ``Q_CLUSTER["recycle"]`` tasks) is counted in
    its parent once reaped, and never twice.
    """
    # The command name is in parentheses and may hold spaces: split after the last ")".
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3].
    session = int(rest[6 - 3])
    ticks = sum(int(rest[n - 3]) for n in (14, 15, 16, 17))
    return session, ticks


def _ours(pid: int, marker: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{RUN_MARKER}={marker}".encode() in environ.split(b"\0")


def session_processes(sessions: Sequence[int], marker: str) -> dict[int, int]:
    """pid -> CPU ticks of every live process of ``sessions`` started by this run."""
    wanted = set(sessions)
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            session, ticks = parse_stat(Path(f"/proc/{pid}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if session in wanted and _ours(pid, marker):
            found[pid] = ticks
    return found


def cpu_seconds(sessions: Sequence[int], marker: str) -> float:
    return sum(session_processes(sessions, marker).values()) / CLOCK_TICKS


def backend_database(cmdline: bytes) -> str | None:
    """The database a PostgreSQL backend serves, from its process title ("postgres:
    [cluster: ]user database host state"); None for any other process."""
    words = cmdline.replace(b"\0", b" ").decode(errors="replace").split()
    if len(words) < 3 or words[0] != "postgres:":
        return None
    if words[1].endswith(":"):  # Debian's cluster_name, "15/main:"
        words = words[1:]
    return words[2] if len(words) > 2 else None


def database_backends(database: str) -> list[int]:
    """The pids of the PostgreSQL backends of ``database`` (the server is on this machine:
    a scan of /proc, cheap enough to repeat while a drain runs)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if backend_database(cmdline) == database:
            found.append(int(entry.name))
    return found


class BackendCpu:
    """CPU of one database's backends over a window: sampled often, since a backend that
    ends (a recycled worker's) takes its ticks with it; what it used since its last
    sample is missed, so this never overcounts."""

    def __init__(self, database: str, *, exclude: frozenset[int] = frozenset()) -> None:
        self.database = database
        self.exclude = exclude  # backends that are not the system's (the benchmark's own)
        self.base: dict[int, int] = {}
        self.last: dict[int, int] = {}

    def sample(self) -> None:
        pids = [pid for pid in database_backends(self.database) if pid not in self.exclude]
        self.last.update(ticks_of(pids))

    def start(self) -> None:
        self.sample()
        self.base = dict(self.last)

    def seconds(self) -> float:
        return ticks_seconds(self.base, self.last)


def ticks_of(pids: Sequence[int]) -> dict[int, int]:
    """pid -> CPU ticks of those of ``pids`` still alive (a file read each: cheap enough
    to take at the same moment as the workers' sample)."""
    ticks = {}
    for pid in pids:
        try:
            ticks[pid] = parse_stat(Path(f"/proc/{pid}/stat").read_text())[1]
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return ticks


def ticks_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU used between two ``ticks_of``: a pid missing before counts whole."""
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / CLOCK_TICKS


def kill_sessions(sessions: Sequence[int], marker: str) -> int:
    """SIGKILL every process of ``sessions`` that carries this run's marker; how many."""
    killed = 0
    for pid in session_processes(sessions, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


@dataclass
class Worker:
    spec: WorkerSpec
    log_path: Path
    marker: str
    pidfile: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> Worker:
        env = dict(self.spec.env, **{RUN_MARKER: self.marker})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.spec.argv,
                cwd=self.spec.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if self.pidfile is not None:  # the orchestrator's safety net if this runner dies
            with self.pidfile.open("a") as f:
                f.write(f"{self.process.pid}\n")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the main process if alive, then whatever of its session outlived it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        # Children that outlived their parent (a prefork child, a qcluster worker).
        kill_sessions([self.process.pid], self.marker)


def stop_all(workers: Sequence[Worker], timeout: float = 10.0) -> None:
    """SIGTERM every main process, give them ``timeout`` together, then SIGKILL the rest."""
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + timeout
    for worker in workers:
        if worker.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.0, deadline - time.monotonic()))
    for worker in workers:
        worker.kill()


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    workers: Sequence[Worker] = (),
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for worker in workers:
            code = worker.exited()
            if code is not None:
                tail = worker.log()[-2000:]
                raise RuntimeError(f"{worker.spec.name} exited ({code}) waiting for {what}: {tail}")
        time.sleep(interval)
    tails = "; ".join(f"{w.spec.name}: {w.log()[-500:]}" for w in workers)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}. {tails}")


@contextlib.contextmanager
def running(
    specs: Sequence[WorkerSpec],
    *,
    workdir: Path,
    marker: str,
    label: str,
    ready: Callable[[], bool] | None = None,
    timeout: float = 60.0,
) -> Iterator[list[Worker]]:
    """Start every worker, wait until each is up, yield them; always stop them all."""
    workers: list[Worker] = []
    try:
        for spec in specs:
            log = workdir / f"{label}-{spec.name}.log"
            workers.append(Worker(spec, log, marker, pidfile=workdir / "pids").start())
        for worker in workers:
            text = worker.spec.ready_text
            if text is not None:
                wait_until(
                    lambda w=worker, t=text: t in w.log(),
                    timeout=timeout,
                    what=f"{worker.spec.name} to log {text!r}",
                    workers=workers,
                )
        if ready is not None:
            wait_until(ready, timeout=timeout, what="workers registered", workers=workers)
        yield workers
    finally:
        stop_all(workers)
