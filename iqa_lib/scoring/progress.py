"""Progress of a scoring run as plain lines, where a bar would be noise or invisible.

Under ``dvc repro`` (``--no-progress``), in a log file or in a notebook kernel
stderr is no terminal: a tqdm bar there is either off or one line rewritten a
million times. Instead one line per written part, and one at least every
``every`` seconds while a part is being scored, says how far the run is, how
fast it goes now and overall, and how long it has left::

    efficientnet_lite:lite0: 4096/38000 rows (10.8%), 21.4 img/s now, 20.9 overall, ~26 min left
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

# Seconds without a written part after which a line is printed anyway.
DEFAULT_EVERY = 60.0
# What a progress line looks like (tests tell them from other stderr lines by this).
LINE_RE = re.compile(r"^\S.*: \d+/\d+ rows \(\d+\.\d%\)")


def format_duration(seconds: float) -> str:
    """``45 s``, ``26 min``, ``3.2 h``: as precise as a time left needs to be."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class ProgressLines:
    """Counts scored rows and prints progress lines to ``stream`` (stderr by default).

    ``total`` is every row of the run, ``kept`` those taken from an earlier run's
    parts: they count as done but not into the speed.
    """

    def __init__(
        self,
        name: str,
        total: int,
        kept: int = 0,
        every: float = DEFAULT_EVERY,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name, self.total, self.kept, self.every = name, int(total), int(kept), every
        self.stream = stream
        self.clock = clock
        self.scored = 0
        self.start = self.last_time = clock()
        self.last_scored = 0

    def update(self, rows: int) -> None:
        """``rows`` more were scored; a line if none was printed for ``every`` seconds."""
        self.scored += rows
        if self.clock() - self.last_time >= self.every:
            self.report()

    def part_written(self) -> None:
        self.report()

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        done = self.kept + self.scored
        pct = 100.0 * done / self.total if self.total else 100.0
        overall = self.scored / max(now - self.start, 1e-9)
        recent = (self.scored - self.last_scored) / max(now - self.last_time, 1e-9)
        text = f"{self.name}: {done}/{self.total} rows ({pct:.1f}%), {recent:.1f} img/s now, {overall:.1f} overall"
        left = self.total - done
        if left <= 0:
            return f"{text}, done in {format_duration(now - self.start)}"
        if self.scored:
            return f"{text}, ~{format_duration(left / overall)} left"
        return text

    def report(self) -> None:
        now = self.clock()
        print(self.line(now), file=self.stream or sys.stderr, flush=True)
        self.last_time, self.last_scored = now, self.scored
