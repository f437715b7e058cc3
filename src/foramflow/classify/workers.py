"""Decoding processes that end when the process that started them ends, however it ends.

A pool's workers wait for work on a queue that they themselves hold open, so a main process
killed with SIGKILL would leave them (and multiprocessing's resource tracker, which waits
for them) running for ever. Each worker therefore asks Linux to kill it when its parent
dies (PR_SET_PDEATHSIG), and also watches its parent from a thread: on other systems, and
for a parent that died before the request was made. Linux sends the signal when the thread
that started the worker ends, so a pool is used from the thread that created it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_S = 0.5


def start_worker(parent_pid: int) -> None:
    """Pool initialiser: leave Ctrl-C to the main process and end with ``parent_pid``."""
    ignore_sigint()
    _die_with_parent()
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True
    ).start()


def ignore_sigint() -> None:
    """Ctrl-C is for the main process, which stops the pool and keeps what is written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _die_with_parent() -> None:
    """Have the kernel send SIGKILL to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no usable libc: the watching thread remains
        pass


def _watch_parent(parent_pid: int) -> None:
    """Exit once this process has another parent: the one that started it has died."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)
