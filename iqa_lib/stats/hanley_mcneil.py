"""Hanley & McNeil's (1982) standard error of an AUC from the AUC and the class sizes alone.

For tables that keep an AUC and its class counts but no resamples (the mixtures' per-mixture
fits), this gives an interval without refitting. It treats the rows as independent, which
holds for a mixture (one row per image ID); its Q1, Q2 are exact when both classes' scores
are exponential and close otherwise.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from iqa_lib import defaults


def hanley_mcneil_se(auc, n_pos, n_neg):
    """SE of an AUC with ``n_pos`` positives and ``n_neg`` negatives; NaN where a class is empty."""
    a = np.asarray(auc, dtype=np.float64)
    n1 = np.asarray(n_pos, dtype=np.float64)
    n2 = np.asarray(n_neg, dtype=np.float64)
    q1 = a / (2.0 - a)
    q2 = 2.0 * a * a / (1.0 + a)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    out = np.sqrt(np.clip(var, 0.0, None))
    return np.where((n1 > 0) & (n2 > 0), out, np.nan)


def hanley_mcneil_interval(auc, n_pos, n_neg, level: float = defaults.LEVEL):
    """Wald interval ``auc +- z * SE``, clipped to [0, 1]: (low, high)."""
    z = stats.norm.ppf(0.5 + level / 2)
    se = hanley_mcneil_se(auc, n_pos, n_neg)
    a = np.asarray(auc, dtype=np.float64)
    return np.clip(a - z * se, 0.0, 1.0), np.clip(a + z * se, 0.0, 1.0)


__all__ = ["hanley_mcneil_interval", "hanley_mcneil_se"]
