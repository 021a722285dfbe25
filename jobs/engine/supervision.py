"""No process of a worker node outlives it.

django-q2's cluster is a tree: the ``qcluster`` main process, its sentinel, and
the sentinel's pusher, monitor and workers. If the main process is killed, the
others would go on running tasks as orphans of init, holding claims of a node
that no longer beats. On Linux every multiprocessing child forked below the
main process asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG``), so the whole tree goes with the main process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


class _Hook:
    """multiprocessing keeps after-fork callbacks in a weak mapping: this object anchors ours."""


_hook = _Hook()


def _die_with_parent(_: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = multiprocessing.parent_process()
    # The parent may have died between the fork and the prctl call.
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


def children_die_with_their_parent() -> bool:
    """From now on, forked multiprocessing children die with their parent (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    multiprocessing.util.register_after_fork(_hook, _die_with_parent)
    return True
