"""Bootstrap resampling by index (or count) matrices, and percentile intervals.

All resamples are drawn up front from ``np.random.default_rng(seed)`` so a statistic is
computed for every resample at once (vectorised) and the same seed gives the same draws
for every scorer, which keeps the intervals of different scorers comparable.
"""

from __future__ import annotations

import warnings

import numpy as np

from iqa_lib import defaults


def bootstrap_indices(n: int, n_boot: int, seed: int | np.random.Generator = defaults.SEED) -> np.ndarray:
    """(n_boot, n) matrix of row indices drawn with replacement."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def cluster_weights(
    n_clusters: int, n_boot: int, seed: int | np.random.Generator = defaults.SEED
) -> np.ndarray:
    """(n_boot, n_clusters) int32 counts: how often each cluster is drawn in each resample.

    Resampling whole clusters (image IDs) keeps the dependence between the variants of one
    image, which a row-wise bootstrap would ignore (its intervals would be too narrow).
    Drawn as index matrices and counted, so a row equals ``bincount(integers(0, n, n))``.
    """
    idx = bootstrap_indices(n_clusters, n_boot, seed)
    out = np.empty((n_boot, n_clusters), dtype=np.int32)
    for b in range(n_boot):
        out[b] = np.bincount(idx[b], minlength=n_clusters)
    return out


def percentile_ci(samples: np.ndarray, level: float = defaults.LEVEL, axis: int = -1):
    """Percentile interval of the finite bootstrap replicates (NaN ones are left out).

    Returns ``(low, high)`` arrays (scalars for 1-D input); NaN where no replicate is finite.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s = np.asarray(samples, dtype=np.float64)
    s = np.where(np.isfinite(s), s, np.nan)
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        lo, hi = np.nanquantile(s, [alpha, 1 - alpha], axis=axis)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi
