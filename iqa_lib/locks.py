"""One writer per output: an advisory ``fcntl.flock`` lock beside each output.

Two runs writing one output (two ``iqa-kit score`` on the same file, a
``--no-resume`` run deleting the parts another run is still writing) corrupt
each other's work. Each command takes the lock of its output first; a second
writer is told which process holds it (pid, command, since when) and exits
non-zero, or waits for it with ``--wait``. The lock dies with its process (the
kernel releases a flock on exit, even after SIGKILL), so a killed run never
leaves a stale lock behind. The lock file ``.<name>.lock`` stays (removing it
would race with a waiting writer); it holds the last holder's description.
The lock goes by the resolved path (``os.path.realpath``): an output reached
through a symlink is the same output, and must be the same lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from iqa_lib.fileio import writing

# Lock files this process holds open. A forked child (a DataLoader or pool worker) shares the
# open file description, and with it the flock: it would keep the output locked after its
# parent was killed. The child closes its copies at once; the parent's lock stays.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in list(_HELD):
        with suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class LockBusy(RuntimeError):
    """Another process is writing this output."""


def lock_path(target: str | os.PathLike) -> Path:
    """``.<name>.lock`` beside the output (a file or a folder), symlinks resolved: one output, one lock."""
    target = Path(os.path.realpath(target))
    return target.with_name(f".{target.name}.lock")


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if "started" in info else "?"
    return f"process {info.get('pid', '?')} ({info.get('command', '?')}, since {since})"


@contextmanager
def output_lock(target: str | os.PathLike, wait: bool = False) -> Iterator[Path]:
    """Hold the lock of ``target`` for the block; raise :class:`LockBusy` unless ``wait``."""
    path = lock_path(target)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    _HELD.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise LockBusy(
                    f"{str(Path(target))!r} is being written by {holder}; wait for it to finish, "
                    "or rerun with --wait to start when it does"
                ) from None
            print(f"waiting for {holder} to finish writing {str(Path(target))!r} ...", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = {"pid": os.getpid(), "command": shlex.join(sys.argv) or "python", "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass  # the holder's description is a courtesy: a full disk must not stop the run here
        yield path
    finally:
        _HELD.discard(fd)
        os.close(fd)  # releases the lock
