"""The analysis defaults, in one place: the params schema (``iqa_lib.config``), the CLI and
every analysis function take them from here, so a default cannot differ between entry points.
"""

from __future__ import annotations

SEED = 0  # numpy seeds are non-negative
N_BOOTSTRAP = 1000  # resamples for every bootstrap interval
TEST_FRACTION = 0.2  # share of image IDs held out for point-wise evaluation
N_FOLDS = 5  # cross-validation folds (content analysis)
LEVEL = 0.95  # confidence level of every interval
