"""Checks of the scoring options (numbers, device), shared by the engine (ValueError) and the CLI (argparse types).

Kept free of torch so that building the CLI parser stays fast. A zero batch
size must not silently become the default, and a negative one must not
surface as a confusing merge error an hour later: each check names the option
and the value, in one line.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

# The kit's own device names: a typo gets this list, not torch's list of every backend it knows.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(name: object) -> str:
    """``name`` as a device string if it is one of :data:`DEVICE_CHOICES`; else a one-line ValueError."""
    text = str(name).strip()
    if not _DEVICE_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a device; valid: auto, cpu, cuda, cuda:N (N = a GPU index), mps"
        )
    return text


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1, else a ValueError naming ``name``."""
    number = _int(value, name, "a positive integer")
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def nonnegative_int(value: Any, name: str) -> int:
    """``value`` as an int >= 0 (0: no worker processes), else a ValueError naming ``name``."""
    number = _int(value, name, "an integer >= 0")
    if number < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return number


def positive_seconds(value: Any, name: str) -> float:
    """``value`` as a finite number of seconds > 0, else a ValueError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return number


def _int(value: Any, name: str, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{name} must be {what}, got {value!r}")
