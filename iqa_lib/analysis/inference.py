"""What may be stated as a finding: the kit's rules of inference, in one place.

:mod:`iqa_lib.analysis.sample_size` says when an interval rests on too few units to mean
anything. This module turns that into what the kit is allowed to *conclude*:

**Significance is shown only where its test is valid.** A paired test of two AUCs
(clustered DeLong) is valid when both classes have at least
``SMALL_N_CLASS_IMAGES`` test images: the clustered variance is a sandwich estimate over
images (clusters), and with a handful of clusters it is itself a noisy estimate, so its
z-score is not normal and the p-value can be astronomically small on two images. A
paired test of two |SRCC| (bootstrap over groups) is valid with at least
``SMALL_N_GROUPS`` groups *and* at least ``SMALL_N_GROUP_IMAGES`` images in the smallest
group: a group accuracy from fewer images is mostly noise (standard error about 0.09 at
0.5 from 30 images), and the groups render the same images, so a bootstrap over groups,
which treats them as independent, is far too confident when a few images lie behind all
of them (75 groups of the same 10 images are 10 images). Where a test is not valid:

- its row of ``paired_tests.csv`` keeps the raw statistic (the data), but its Holm
  p-value is NaN and ``significant_*`` is NA (neither significant nor "not
  significant": untested); Holm's family is the valid tests only, so an invalid p-value
  cannot change the others' adjustment;
- a table's mark against the best row is "n too small", with no p-value.

**Verdicts are three-valued, from intervals and paired tests, never point estimates.**

- A threshold claim ("every AUC below 0.65", "every |SRCC| at least 0.7") *holds* when
  every row's interval lies on the claimed side of the threshold; it *does not hold*
  when some row with enough n has its whole interval on the other side; otherwise it is
  *inconclusive* (an interval straddles the threshold, a row has too small an n, or a
  row has no interval).
- A comparison claim ("Q_a beats Q_b") *holds* when every comparison is in the claimed
  direction and significant by a valid paired test; it *does not hold* when some
  comparison is significant the other way; otherwise it is *inconclusive*: a difference
  that its paired test calls not significant never decides a comparison.
- A claim the configured scorers cannot test is *not tested*.

Each verdict carries its evidence in words: the estimate, its interval, the p-value
where a test decides, and n.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iqa_lib import defaults
from iqa_lib.analysis.sample_size import (
    SMALL_N_CLASS_IMAGES,
    SMALL_N_GROUP_IMAGES,
    SMALL_N_GROUPS,
    small_auc,
    small_groups,
)
from iqa_lib.stats.multiple import holm

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTED)
N_TOO_SMALL = "n too small"

RULE_TEXT = (
    f"A p-value or significance mark is shown only where its test is valid: a paired AUC test "
    f"(clustered DeLong) needs at least {SMALL_N_CLASS_IMAGES} test images in each class, a paired "
    f"|SRCC| test at least {SMALL_N_GROUPS} groups of at least "
    f"{SMALL_N_GROUP_IMAGES} images each; below that the clustered variance (or the bootstrap over "
    f"groups, which share their images and are not independent) is too unstable for its p-value to "
    f"mean anything, and the mark is \"{N_TOO_SMALL}\"."
)
VERDICT_RULE_TEXT = (
    "Verdicts: *holds* when every interval behind the claim lies on the claimed side of its "
    "threshold (or every comparison is significant the claimed way); *does not hold* when an "
    "interval with enough n lies wholly on the other side (or a comparison is significant the other "
    "way); *inconclusive* otherwise (an interval straddles the threshold, n is too small, or a paired "
    "difference is not significant)."
)


def auc_test_valid(n_pos_images, n_neg_images):
    """True where a (clustered) paired AUC test has enough test images in both classes."""
    return ~np.asarray(small_auc(np.asarray(n_pos_images, dtype=float), np.asarray(n_neg_images, dtype=float)))


def srcc_test_valid(n_groups, min_group_images=None):
    """True where a paired |SRCC| test rests on at least ``SMALL_N_GROUPS`` groups and (when
    ``min_group_images`` is given) at least ``SMALL_N_GROUP_IMAGES`` images in its smallest group."""
    n = np.asarray(n_groups, dtype=np.float64)
    return np.isfinite(n) & ~np.asarray(small_groups(n, min_group_images), dtype=bool)


def holm_valid(p, valid) -> np.ndarray:
    """Holm-adjusted p-values over the valid tests only; NaN for the others."""
    p = np.asarray(p, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(p)
    out = np.full(p.shape, np.nan)
    if valid.any():
        out[valid] = holm(p[valid])
    return out


def significance(p_adjusted, valid, alpha: float) -> pd.arrays.BooleanArray:
    """``p < alpha`` where the test is valid and has a p-value; NA (untested) elsewhere."""
    p = np.atleast_1d(np.asarray(p_adjusted, dtype=np.float64))
    ok = np.asarray(valid, dtype=bool) & np.isfinite(p)
    out = pd.array(p < alpha, dtype="boolean")
    out[~ok] = pd.NA
    return out


def is_true(value) -> bool:
    """A set flag (True, numpy's True, "True" read back from a CSV); NA, NaN, None, False are not."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return isinstance(value, (bool, np.bool_)) and bool(value)


def vs_best_mark(p_adjusted: float, significant, valid: bool) -> str:
    """A table row's mark against the best row: "lower (p ..)", "n.s. (p ..)" or "n too small"."""
    if not valid:
        return N_TOO_SMALL
    if p_adjusted is None or not np.isfinite(p_adjusted):
        return ""
    return f"{'lower' if is_true(significant) else 'n.s.'} (p {p_adjusted:.2g})"


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One number behind a verdict: a point estimate, its interval and its n."""

    label: str  # what it is, e.g. "lite0 vs tv"
    value: float
    low: float = float("nan")
    high: float = float("nan")
    n: str = ""  # in words, e.g. "100 test images" or "75 groups"
    small_n: bool = False

    def text(self, stat: str) -> str:
        body = f"{self.label}: {stat} {self.value:.3f}"
        if np.isfinite(self.low) and np.isfinite(self.high):
            body += f" [{self.low:.3f}, {self.high:.3f}]"
        else:
            body += " (no interval)"
        if self.n:
            body += f", n {self.n}"
        return body + (" (n too small)" if self.small_n else "")


@dataclass(frozen=True)
class Comparison:
    """One paired comparison behind a verdict: is ``better`` really above ``worse``?"""

    label: str  # e.g. "lite0: q_p vs q_h"
    better: float  # the value the claim says is higher
    worse: float
    p: float = float("nan")  # the paired test's (adjusted) p-value
    valid: bool = False  # the paired test is valid at this n
    n: str = ""
    test: str = "paired test"

    @property
    def diff(self) -> float:
        return self.better - self.worse

    @property
    def significant(self) -> bool:
        return self.valid and bool(np.isfinite(self.p)) and self.p < 0.05

    def text(self, stat: str) -> str:
        body = f"{self.label}: {stat} {self.better:.3f} vs {self.worse:.3f} (difference {self.diff:+.3f}"
        if not self.valid:
            body += f"; {self.test} not valid, {N_TOO_SMALL}"
        elif np.isfinite(self.p):
            body += f"; {self.test} p {self.p:.2g}, {'significant' if self.significant else 'not significant'}"
        else:
            body += f"; no {self.test}"
        return body + (f", n {self.n})" if self.n else ")")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str  # why, in words (empty when it holds or fails plainly)
    evidence: str  # the numbers, in words


def _listed(items: Sequence[str], limit: int = 8) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _wrong_side(r: Estimate, threshold: float, side: str) -> bool:
    """The whole interval on the other side of ``threshold`` from the claim's."""
    if not (np.isfinite(r.low) and np.isfinite(r.high)):
        return False
    return r.low >= threshold if side == "below" else r.high < threshold


def _right_side(r: Estimate, threshold: float, side: str) -> bool:
    """The whole interval on the claim's side of ``threshold``."""
    if not (np.isfinite(r.low) and np.isfinite(r.high)):
        return False
    return r.high < threshold if side == "below" else r.low >= threshold


def _threshold_doubts(rows: list[Estimate], threshold: float, side: str) -> str:
    """Why an undecided threshold claim is inconclusive: straddling intervals, small n."""
    small = sum(r.small_n for r in rows)
    straddle = sum(not _right_side(r, threshold, side) and not _wrong_side(r, threshold, side) for r in rows)
    return _reasons((straddle, f"{straddle} of {len(rows)} intervals straddle {threshold} (or have none)"),
                    (small, f"{small} of {len(rows)} rest on too small an n"))


def threshold_verdict(rows: Iterable[Estimate], threshold: float, side: str, stat: str = "value") -> Verdict:
    """A claim "every value is below ``threshold``" (``side="below"``) or "at least" it (``"at_least"``)."""
    if side not in ("below", "at_least"):
        raise ValueError(f"side must be 'below' or 'at_least', not {side!r}")
    rows = [r for r in rows if np.isfinite(r.value)]
    if not rows:
        return Verdict(NOT_TESTED, "no numbers to judge", "none")
    verdict, reason = _judge_threshold(rows, threshold, side)
    return Verdict(verdict, reason, _listed([r.text(stat) for r in rows]))


def _judge_threshold(rows: list[Estimate], threshold: float, side: str) -> tuple[str, str]:
    """(verdict, reason): fails on an interval wholly on the wrong side (at a valid n), holds
    when every interval is wholly on the right side, else inconclusive."""
    refuting = [r for r in rows if _wrong_side(r, threshold, side) and not r.small_n]
    if refuting:
        return FAILS, (f"{len(refuting)} of {len(rows)} intervals lie wholly on the other side of "
                       f"{threshold}, e.g. {refuting[0].label}")
    if all(_right_side(r, threshold, side) and not r.small_n for r in rows):
        return HOLDS, ""
    return INCONCLUSIVE, _threshold_doubts(rows, threshold, side)


def comparison_verdict(comparisons: Iterable[Comparison], stat: str = "AUC") -> Verdict:
    """A claim "the better one beats the worse one" in every comparison, decided by paired tests."""
    comparisons = [c for c in comparisons if np.isfinite(c.better) and np.isfinite(c.worse)]
    if not comparisons:
        return Verdict(NOT_TESTED, "nothing to compare", "none")
    verdict, reason = _judge_comparisons(comparisons)
    return Verdict(verdict, reason, _listed([c.text(stat) for c in comparisons]))


def _judge_comparisons(comparisons: list[Comparison]) -> tuple[str, str]:
    """(verdict, reason): fails on a significant difference the other way, holds when every
    difference is significant and the right way, else inconclusive."""
    against = [c for c in comparisons if c.significant and c.diff < 0]
    if against:
        return FAILS, f"{against[0].label} is significantly the other way"
    if all(c.significant and c.diff > 0 for c in comparisons):
        return HOLDS, ""
    return INCONCLUSIVE, _comparison_doubts(comparisons)


def _comparison_doubts(comparisons: list[Comparison]) -> str:
    """Why an undecided comparison claim is inconclusive: tests invalid at their n, differences not significant."""
    invalid = sum(not c.valid for c in comparisons)
    ns = sum(c.valid and not c.significant for c in comparisons)
    return _reasons((invalid, f"{invalid} of {len(comparisons)} comparisons have too small an n for their test"),
                    (ns, f"{ns} of {len(comparisons)} differences are not significant"))


def _reasons(*counted: tuple[int, str]) -> str:
    """The reasons whose count is not zero, in order, joined."""
    return "; ".join(text for count, text in counted if count)


def mean_interval(mean: float, sd: float, n: float, level: float = defaults.LEVEL) -> tuple[float, float]:
    """A t interval of a mean over ``n`` units (folds, groups, mixtures) from its sd."""
    from scipy import stats

    if not (np.isfinite(mean) and np.isfinite(sd) and np.isfinite(n)) or n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)
    return float(mean - half), float(mean + half)


__all__ = [
    "FAILS",
    "HOLDS",
    "INCONCLUSIVE",
    "NOT_TESTED",
    "N_TOO_SMALL",
    "RULE_TEXT",
    "VERDICTS",
    "VERDICT_RULE_TEXT",
    "Comparison",
    "Estimate",
    "Verdict",
    "auc_test_valid",
    "comparison_verdict",
    "holm_valid",
    "is_true",
    "mean_interval",
    "significance",
    "srcc_test_valid",
    "threshold_verdict",
    "vs_best_mark",
]
