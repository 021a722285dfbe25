"""benchmarks/peers/proc.py: reading a process's session and CPU from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.peers.proc import CLOCK_TICKS, backend_database, parse_stat, ticks_of, ticks_seconds


def stat_line(comm: str, *, session: int, utime: int, stime: int, cutime: int, cstime: int):
    # Fields 3.. of /proc/<pid>/stat: state ppid pgrp session tty tpgid flags minflt
    # cminflt majflt cmajflt utime stime cutime cstime priority ...
    fields = ["S", "1", "4242", str(session), "0", "-1", "0", "10", "0", "0", "0"]
    fields += [str(utime), str(stime), str(cutime), str(cstime), "20", "0", "1"]
    return f"4242 ({comm}) " + " ".join(fields)


def test_parse_stat_sums_own_and_reaped_children_cpu():
    line = stat_line("python", session=4242, utime=120, stime=30, cutime=45, cstime=5)
    assert parse_stat(line) == (4242, 200)


def test_parse_stat_survives_a_command_name_with_spaces_and_parentheses():
    line = stat_line("qcluster ) x (", session=7, utime=1, stime=2, cutime=3, cstime=4)
    assert parse_stat(line) == (7, 10)


def test_parse_stat_reads_this_process():
    session, ticks = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert session == os.getsid(0)
    assert ticks >= 0


def test_ticks_seconds_counts_what_each_pid_used_and_a_new_pid_whole():
    before = {10: 100, 11: 50, 12: 7}  # 12 ended meanwhile: it cannot be read any more
    after = {10: 130, 11: 50, 13: 20}  # 13 connected meanwhile
    assert ticks_seconds(before, after) == (30 + 0 + 20) / CLOCK_TICKS


def test_ticks_of_reads_live_pids_and_skips_gone_ones():
    ticks = ticks_of([os.getpid(), 2**22 + 1])  # above any pid_max: never a live pid
    assert list(ticks) == [os.getpid()]
    assert ticks[os.getpid()] == parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())[1]


@pytest.mark.parametrize(
    ("cmdline", "database"),
    [
        (b"postgres: 15/main: postgres bench17_tablo 127.0.0.1(53262) idle\0\0", "bench17_tablo"),
        (b"postgres: app bench17_celery [local] SELECT", "bench17_celery"),
        (b"postgres: 15/main: checkpointer \0\0", None),
        (b"/usr/lib/postgresql/15/bin/postgres\0-D\0/var/lib", None),
        (b"python\0manage.py\0qcluster", None),
    ],
)
def test_backend_database_reads_the_process_title(cmdline: bytes, database: str | None):
    assert backend_database(cmdline) == database
