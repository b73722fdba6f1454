"""Paired bootstrap of the difference between two metrics on the same resamples.

Why: the intervals of two AUCs (or two correlations) computed on the same test images
overlap even when one metric is consistently better, because most of their sampling
noise is shared. Resampling once and taking the difference on every resample keeps the
pairing, so the interval of the difference reflects only the noise that differs.

- AUC: cluster bootstrap over test image IDs (all rows of an image move together), the
  same count matrices as the point-wise analysis (:func:`iqa_lib.stats.bootstrap.cluster_weights`)
  and its compiled weighted Mann-Whitney kernel.
- SRCC: bootstrap over (corruption, severity) groups, the same index matrices as the
  group-wise analysis (:func:`iqa_lib.stats.bootstrap.bootstrap_indices`).

The interval is the percentile interval of the replicated differences. The p-value is
two-sided from the normal approximation with the bootstrap standard error,
p = 2 Phi(-|diff| / sd(replicates)): a percentile ("inversion") p-value cannot go below
2 / (B + 1), which with B = 1000 resamples and Holm over ~100 pairs could never reject.
A difference that is exactly 0 on the sample and on every resample (a Q against a
monotone transform of itself) gets p = 1.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from iqa_lib import defaults
from iqa_lib.stats import _kernels as K
from iqa_lib.stats.bootstrap import bootstrap_indices, cluster_weights, percentile_ci
from iqa_lib.stats.logistic import sorted_blocks, weights_for_kernel


def diff_summary(diff: float, reps: np.ndarray, level: float = defaults.LEVEL) -> dict[str, float]:
    """Percentile interval, bootstrap SE and normal p-value of a difference.

    Keys: ci_low, ci_high, se, p_value, n_boot_valid (finite replicates).
    """
    reps = np.asarray(reps, dtype=np.float64)
    ok = reps[np.isfinite(reps)]
    if ok.size < 2 or not np.isfinite(diff):
        return {
            "ci_low": np.nan,
            "ci_high": np.nan,
            "se": np.nan,
            "p_value": np.nan,
            "n_boot_valid": int(ok.size),
        }
    lo, hi = percentile_ci(ok, level)
    se = float(ok.std(ddof=1))
    if se <= 1e-12 * max(1.0, abs(diff)):
        p = 1.0 if diff == 0.0 else np.nan
    else:
        p = float(2.0 * stats.norm.sf(abs(diff) / se))
    return {"ci_low": lo, "ci_high": hi, "se": se, "p_value": p, "n_boot_valid": int(ok.size)}


def auc_weights(n_clusters: int, n_boot: int, seed: int = defaults.SEED) -> np.ndarray:
    """(n_clusters, B) resample counts in the kernel layout; the point-wise analysis's draws
    for the same seed (``default_rng([seed, 1])``)."""
    w = cluster_weights(n_clusters, n_boot, np.random.default_rng([seed, 1]))
    return weights_for_kernel(w)


def cluster_auc_reps(score, y, cluster, weights_t: np.ndarray) -> np.ndarray:
    """Raw-score AUC (higher score = class 1) on every resample of ``weights_t``."""
    x = np.ascontiguousarray(score, dtype=np.float64)
    order, blocks = sorted_blocks(x)
    yy = np.ascontiguousarray(np.asarray(y)[order], dtype=np.int8)
    cl = np.ascontiguousarray(np.asarray(cluster)[order], dtype=np.int64)
    return K.bootstrap_auc_sorted(yy, cl, blocks, weights_t)


def paired_auc_bootstrap(
    score_a, score_b, y, cluster, *, n_boot: int = defaults.N_BOOTSTRAP, seed: int = defaults.SEED, level: float = defaults.LEVEL
) -> dict[str, float]:
    """Raw-score AUC_a - AUC_b (higher score = class 1) under a cluster bootstrap with the
    same resamples for both scores.

    ``cluster``: a code per row (image IDs). Returns diff and :func:`diff_summary`'s keys.
    """
    cl = np.asarray(cluster)
    _, cl = np.unique(cl, return_inverse=True)
    n_cl = int(cl.max()) + 1
    wt = auc_weights(n_cl, n_boot, seed)
    a = K.auc_raw(np.ascontiguousarray(score_a, dtype=np.float64), np.asarray(y, np.int8))
    b = K.auc_raw(np.ascontiguousarray(score_b, dtype=np.float64), np.asarray(y, np.int8))
    reps = cluster_auc_reps(score_a, y, cl, wt) - cluster_auc_reps(score_b, y, cl, wt)
    return {"diff": float(a - b), **diff_summary(float(a - b), reps, level)}


def unit_rank_rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Average ranks of x on each resample row of ``idx``, centred and scaled to unit norm:
    the row-wise dot product of two such matrices is Spearman's rho per resample."""
    r = stats.rankdata(np.asarray(x, dtype=np.float64)[idx], axis=1)
    r -= r.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", r, r))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = r / norm[:, None]
    out[norm <= 0] = np.nan
    return out


def spearman(x, y) -> float:
    """scipy's Spearman rho (what the group-wise table reports); NaN for a constant input."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y)[0])


def srcc_reps(ranks_q: np.ndarray, ranks_acc: np.ndarray) -> np.ndarray:
    """Spearman rho per resample from two :func:`unit_rank_rows` matrices."""
    return np.clip(np.einsum("ij,ij->i", ranks_q, ranks_acc), -1.0, 1.0)


def paired_srcc_bootstrap(
    q_a, q_b, acc, *, n_boot: int = defaults.N_BOOTSTRAP, seed: int = defaults.SEED, level: float = defaults.LEVEL
) -> dict[str, float]:
    """|SRCC(q_a, acc)| - |SRCC(q_b, acc)| over the same group resamples.

    Each correlation is oriented by the sign of its value on the full sample (so the point
    estimate is the |SRCC| the paper reports) and that sign is kept on every resample.
    """
    idx = bootstrap_indices(len(acc), n_boot, seed)
    ra = unit_rank_rows(acc, idx)
    out = []
    for q in (q_a, q_b):
        point = spearman(q, acc)
        sign = 1.0 if point >= 0 else -1.0
        out.append((sign * point, sign * srcc_reps(unit_rank_rows(q, idx), ra)))
    diff = out[0][0] - out[1][0]
    return {"diff": diff, **diff_summary(diff, out[0][1] - out[1][1], level)}


__all__ = [
    "auc_weights",
    "cluster_auc_reps",
    "diff_summary",
    "paired_auc_bootstrap",
    "paired_srcc_bootstrap",
    "spearman",
    "srcc_reps",
    "unit_rank_rows",
]
