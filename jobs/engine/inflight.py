"""What each worker process of this node is running, in memory its processes share.

A worker process can die alone while its node lives on (the kernel's OOM killer, a
segfault, django-q2's guard stopping a task past its timeout): django-q2 starts a
new one, and the task it held would stay claimed by a live node forever. So every
worker writes the task it starts into a slot of an array the ``qcluster`` main
process created before forking, and clears it when the task ends. The main
process's heartbeat reads the slots: a slot whose process is gone names a task
that must be handed out again.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
from pathlib import Path
from typing import Any

# Per slot: pid, Job.id, attempt. 0 means free / idle.
_FIELDS = 3
_slots: Any = None


def create(*, workers: int) -> None:
    """Make the slots (in the main process, before the cluster forks)."""
    global _slots
    # Room for replacements: a recycled or reincarnated worker takes a new slot
    # while the old one is freed when its process is found gone.
    _slots = multiprocessing.get_context("fork").Array(ctypes.c_longlong, 4 * workers * _FIELDS)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return state not in ("Z", "X")


def started(row_id: int, attempt: int) -> None:
    """This worker process starts the task (``row_id``, ``attempt``)."""
    if _slots is None:
        return
    pid = os.getpid()
    with _slots.get_lock():
        free = None
        for i in range(0, len(_slots), _FIELDS):
            if _slots[i] == pid:
                free = i
                break
            if free is None and _slots[i] == 0:
                free = i
        if free is None:
            return  # every slot taken: this task is covered by the node's own death only
        _slots[free : free + _FIELDS] = [pid, row_id, attempt]


def finished() -> None:
    """This worker process's task ended (its result goes to the monitor)."""
    if _slots is None:
        return
    pid = os.getpid()
    with _slots.get_lock():
        for i in range(0, len(_slots), _FIELDS):
            if _slots[i] == pid:
                _slots[i : i + _FIELDS] = [0, 0, 0]
                return


def lost() -> list[tuple[int, int]]:
    """(Job.id, attempt) of tasks whose worker process is gone; their slots are freed."""
    if _slots is None:
        return []
    found = []
    with _slots.get_lock():
        for i in range(0, len(_slots), _FIELDS):
            pid, row_id, attempt = _slots[i : i + _FIELDS]
            if pid and not _alive(pid):
                if row_id:
                    found.append((row_id, attempt))
                _slots[i : i + _FIELDS] = [0, 0, 0]
    return found
