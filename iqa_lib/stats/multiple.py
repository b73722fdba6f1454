"""Multiple-comparison adjustment of p-values.

Why: a table of all pairs of k metrics holds k(k-1)/2 tests; at level 0.05 some of them
come out "significant" by chance alone. Holm's step-down procedure controls the
family-wise error rate under any dependence between the tests (they share test images,
so they are dependent) and is uniformly more powerful than Bonferroni.
"""

from __future__ import annotations

import numpy as np


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as the input).

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)), so the adjusted
    values are monotone in the raw ones and capped at 1. NaN entries stay NaN and are not
    counted in m (a test that could not be run is not part of the family).
    Equals ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]`` on the
    non-NaN entries (tested).
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(np.isfinite(flat))
    if np.any((flat[ok] < 0) | (flat[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(flat[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * flat[order]))
    res = out.ravel()
    res[order] = adj
    return res.reshape(p.shape)


__all__ = ["holm"]
