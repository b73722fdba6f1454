"""Numbers in words: the one formatting of counts that tables, claims and reports share.

A count read back from a CSV is a float (NaN where it is missing); a reader wants "120",
never "120.0", and a mark where it is unknown.
"""

from __future__ import annotations

import math
from typing import Any


def count_text(value: Any, missing: str = "?") -> str:
    """A count as an integer string; ``missing`` where it is None, NaN, infinite or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return missing
    return str(int(number)) if math.isfinite(number) else missing
