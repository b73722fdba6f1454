"""glibc malloc settings for scoring processes: keep big buffers mapped between batches.

glibc returns every allocation above its mmap threshold (at most 32 MiB when
it adapts the threshold itself) to the kernel on ``free``, and trims the heap
top above its trim threshold. A CPU forward pass allocates activations of tens
of MiB per layer per batch, so each batch mapped them afresh and paid a page
fault per 4 KiB touched: ~23,000 minor faults per image for
EfficientNet-Lite0 at batch 32, against ~150 in a warm forward loop with the
settings here (~900 per image over a whole 320-image run, start-up included),
and ~2.3x the throughput on 2 cores (see ``benchmarks/README.md``). Raising both thresholds keeps freed buffers in the
heap for the next batch; peak memory stays about the same, because the same
buffers are reused instead of mapped again.

:func:`tune_allocator` applies them once per process: the engine calls it at
the start of :func:`iqa_lib.scoring.engine.run_scoring` and in every loader
worker. Elsewhere than glibc (macOS, musl) it does nothing and says so at
debug level.

``IQA_KIT_MALLOPT`` chooses: unset or ``1`` the defaults below, ``0`` (or
``off``) nothing, or ``mmap_threshold=BYTES,trim_threshold=BYTES,arena_max=N``
(any subset; ``top_pad`` too) to set those instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

ENV = "IQA_KIT_MALLOPT"
# <malloc.h> parameter numbers
PARAMS = {"trim_threshold": -1, "top_pad": -2, "mmap_threshold": -3, "mmap_max": -4, "arena_max": -8}
DEFAULTS = {"mmap_threshold": 1 << 30, "trim_threshold": 2**31 - 1}  # 1 GiB, 2 GiB

log = logging.getLogger(__name__)
_applied: dict[str, int] | None = None  # what this process set (None: not yet asked)
_pid: int | None = None  # the process that set it (a forked child inherits the settings, not the flag)


def settings(value: str | None = None) -> dict[str, int]:
    """The mallopt settings ``IQA_KIT_MALLOPT`` (or ``value``) asks for; ``{}``: leave malloc alone."""
    text = (os.environ.get(ENV, "") if value is None else value).strip().lower()
    if text in ("", "1", "on", "yes", "true", "default"):
        return dict(DEFAULTS)
    if text in ("0", "off", "no", "false", "none"):
        return {}
    out: dict[str, int] = {}
    for item in text.split(","):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or name not in PARAMS:
            raise ValueError(
                f"{ENV}={text!r}: expected 0, 1 or name=bytes pairs separated by commas, "
                f"names among {', '.join(PARAMS)}"
            )
        try:
            out[name] = int(number.strip())
        except ValueError:
            raise ValueError(f"{ENV}={text!r}: {name} must be an integer, not {number.strip()!r}") from None
    return out


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None  # musl and others: no gnu_get_libc_version
    return libc


def tune_allocator(value: str | None = None) -> dict[str, int]:
    """Apply the settings once in this process; return {name: mallopt's return (1 = applied)}.

    A no-op (``{}``) when disabled, off glibc, or already done in this process.
    """
    global _applied, _pid
    if _applied is not None and _pid == os.getpid():
        return {}
    wanted = settings(value)
    _applied, _pid = {}, os.getpid()
    if not wanted:
        log.debug("%s=0: malloc settings left alone", ENV)
        return {}
    libc = _glibc()
    if libc is None:
        log.debug("not glibc (%s): malloc settings left alone", sys.platform)
        return {}
    result = {}
    for name, number in wanted.items():
        clipped = max(-(2**31), min(number, 2**31 - 1))
        result[name] = int(libc.mallopt(PARAMS[name], clipped))
        if result[name] != 1:
            log.debug("mallopt(%s, %d) refused", name, clipped)
    _applied = result
    return result


def worker_init(worker_id: int = 0) -> None:
    """Loader worker / pool initializer form of :func:`tune_allocator`."""
    tune_allocator()
