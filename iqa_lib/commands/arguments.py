"""Argument types that check numbers as ``params.yaml`` does, with one-line messages.

argparse turns a type function's ``ArgumentTypeError`` into ``iqa-kit X: error:
argument --opt: <message>`` and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def integer(minimum: int, what: str = "") -> Callable[[str], int]:
    """An int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be at least {minimum}{f' ({what})' if what else ''}, got {value}"
            )
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def between(low: float, high: float, what: str = "") -> Callable[[str], float]:
    """A float strictly between ``low`` and ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low < value < high:
            raise argparse.ArgumentTypeError(
                f"must be between {low:g} and {high:g}{f' ({what})' if what else ''}, got {value:g}"
            )
        return value

    parse.__name__ = "number"
    return parse
