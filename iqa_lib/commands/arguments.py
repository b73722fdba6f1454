"""The commands' argparse value types: numbers, devices and scorer specs checked as ``params.yaml``
checks them, with one-line messages.

argparse turns a type function's ``ArgumentTypeError`` into ``iqa-kit X: error:
argument --opt: <message>`` and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from iqa_lib.checks import check_device, nonnegative_int, positive_int, positive_seconds


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


def _arg_type(check: Callable[[Any, str], Any], what: str) -> Callable[[str], Any]:
    """An argparse type from a check of :mod:`iqa_lib.checks` (argparse names the option)."""

    def parse(text: str) -> Any:
        try:
            return check(text, "value")
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None

    parse.__name__ = what  # argparse's fallback message names the type
    return parse


positive_int_arg = _arg_type(positive_int, "a positive integer")
nonnegative_int_arg = _arg_type(nonnegative_int, "an integer >= 0")
positive_seconds_arg = _arg_type(positive_seconds, "a positive number of seconds")


def device_arg(text: str) -> str:
    """A device of the kit's own list (argparse type): a typo gets that list, not torch's."""
    try:
        return check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def spec_arg(text: str) -> Any:
    """A spec string, or a YAML/JSON mapping such as ``{spec: open_clip:ViT-B-32/openai, temperature: 1}``."""
    text = text.strip()
    if not text.startswith("{"):
        return text
    import yaml  # only for a mapping: yaml stays off the parser's start-up path

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"scorer mapping {text!r} is not valid YAML: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"scorer mapping {text!r} is not a mapping")
    return value


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels``: Pillow's decompression-bomb limit, for the commands that read images."""
    parser.add_argument(
        "--max-pixels", type=integer(1, "pixels"), default=None, metavar="N",
        help="largest image (width x height) decoded without a warning; twice it is refused as a "
        "decompression bomb and listed as a failure (default: Pillow's 89,478,485; raise it only "
        "for trusted files: memory grows with it, about 6 bytes per pixel per worker)",
    )


def apply_max_pixels(args: argparse.Namespace, default: int | None = None) -> None:
    """Set the limit for this process and, through the environment, its workers: ``--max-pixels``,
    else ``default`` (``data.max_pixels`` of params.yaml), else what is set already."""
    from iqa_lib.data.images import set_max_pixels  # Pillow: kept off the parser's start-up path

    flag = getattr(args, "max_pixels", None)
    set_max_pixels(default if flag is None else flag)


def fractions_list(text: str) -> list[float]:
    """'0.01,0.05' or '1%,5%' -> [0.01, 0.05]."""
    out = []
    for v in (v.strip() for v in text.split(",")):
        if not v:
            continue
        try:
            f = float(v[:-1]) / 100 if v.endswith("%") else float(v)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a fraction or percentage: {v!r}") from exc
        if not 0 <= f <= 1:
            raise argparse.ArgumentTypeError(f"{v!r} is not in [0, 1] (write 5% or 0.05)")
        out.append(f)
    return out


def integers_list(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3]."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc


def names_list(text: str) -> list[str]:
    """'a, b,' -> ['a', 'b']: comma-separated names on the command line."""
    return [v.strip() for v in text.split(",") if v.strip()]
