"""The wording the data modules share: a few examples of a long list, for one-line errors."""

from __future__ import annotations

from collections.abc import Iterable


def examples(items: Iterable[str], n: int = 5) -> str:
    """The first ``n`` items quoted, and how many more: an error names a few, never thousands."""
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def row_numbers(index: list[int]) -> str:
    """1-based data row numbers (the header is not counted), a few of them."""
    return examples([str(i + 1) for i in index]).replace("'", "")
