"""Process pools whose workers die with the kit.

A killed ``iqa-kit corrupt`` or ``manifest`` (SIGKILL, an out-of-memory kill, a
CI timeout) used to leave its workers alive and blocked for minutes, holding
the parent's stdout and stderr, so a caller capturing its output hung. Every
worker of :func:`process_pool` first asks Linux to SIGKILL it when its parent
dies (``prctl(PR_SET_PDEATHSIG)``), then checks that the parent has not died
already (the race between the fork and the ``prctl``). Elsewhere this is a
no-op: the workers end when they next find their call queue closed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass  # no /proc: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` (its creator) dies; Linux only."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    # The parent may have died before the prctl: then nobody would send the signal.
    # Under fork and spawn the parent is our creator; under forkserver it is not, and
    # the forkserver (our real parent) exits when the kit does.
    if os.getppid() != parent and not process_alive(parent):
        os._exit(1)


def _start_worker(parent: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def process_pool(
    workers: int,
    *,
    context: str | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers die with this process, then run ``initializer``.

    ``context`` is a multiprocessing start method (``None``: the platform's default).
    """
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context(context),
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )
