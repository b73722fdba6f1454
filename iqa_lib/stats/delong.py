"""DeLong's test for correlated AUCs: k scores predicting the same binary labels.

Why: two quality scores Q_a and Q_b evaluated on the same test images are not
independent, so comparing their AUC intervals side by side is not a test. DeLong,
DeLong & Clarke-Pearson (1988) estimate the covariance matrix of the k AUCs from the
*placement values* (structural components) of each row:

- a positive row i (y = 1): V10_i = P(score of i beats a random negative), ties 1/2;
- a negative row j (y = 0): V01_j = P(a random positive beats j), ties 1/2.

The AUC is the mean of either set. Placement values come from one sort per score, as in
Sun & Xu's (2014) midrank algorithm: in each run of tied scores, the count of the other
class strictly below (or above) plus half the tied ones, which is the midrank difference
of their formula. O(n log n), ties exact, never the O(n^2) pairwise comparisons.

Two covariance estimators, pick by how the rows were sampled:

- ``clusters=None`` (ordinary DeLong): rows are independent draws. Right for one row per
  image (clean images only, one mixture, a single corruption group).
- ``clusters=image codes`` (Obuchowski 1997, Biometrics 53:567): rows come in correlated
  clusters (ImageNet-C: 76 variants of one image). Placement values are summed per
  cluster and the clusters are the independent units. Ordinary DeLong on clustered rows
  understates the variance, so its p-values are too small.

With one row per cluster the clustered estimator equals the ordinary one exactly (the
cross term S11 vanishes and I10 = n_pos, I01 = n_neg); tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class DeLong:
    """AUCs of k scores and their covariance matrix (DeLong or Obuchowski clustered)."""

    auc: np.ndarray  # (k,)
    cov: np.ndarray  # (k, k)
    n_pos: int
    n_neg: int
    n_clusters: int | None  # None: rows treated as independent


@dataclass(frozen=True)
class PairedAUC:
    """Test of AUC_a - AUC_b = 0: z = diff / sqrt(var_diff), two-sided normal p-value."""

    auc_a: float
    auc_b: float
    diff: float
    var_diff: float
    z: float
    p_value: float


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError("labels must be 1-D")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return y.astype(bool)


def placement_values(score, y, order: np.ndarray | None = None) -> np.ndarray:
    """Per-row placement value: V10 on positive rows, V01 on negative rows.

    ``order`` may pass a precomputed ``argsort(score)`` (shared by several label vectors).
    Ties count 1/2 (midranks). NaN everywhere when y has one class only.
    """
    x = np.asarray(score, dtype=np.float64)
    pos = _labels(y)
    if x.shape != pos.shape:
        raise ValueError(f"score and y differ in length: {x.shape} vs {pos.shape}")
    n1 = int(pos.sum())
    n0 = pos.size - n1
    if n1 == 0 or n0 == 0:
        return np.full(x.size, np.nan)
    if order is None:
        order = np.argsort(x, kind="stable")
    xs = x[order]
    ps = pos[order]
    # block = run of tied scores in sorted order
    block = np.concatenate(([0], np.cumsum(xs[1:] != xs[:-1])))
    nb = int(block[-1]) + 1
    c1 = np.bincount(block, weights=ps, minlength=nb)
    c0 = np.bincount(block, minlength=nb) - c1
    below0 = np.cumsum(c0) - c0  # negatives strictly below each block
    above1 = n1 - np.cumsum(c1)  # positives strictly above each block
    v10 = (below0 + 0.5 * c0) / n0
    v01 = (above1 + 0.5 * c1) / n1
    out = np.empty(x.size)
    out[order] = np.where(ps, v10[block], v01[block])
    return out


def delong_from_placements(v: np.ndarray, y, clusters=None) -> DeLong:
    """AUCs and covariance from a (k, n) matrix of placement values (see module docstring).

    ``clusters``: integer cluster code per row (e.g. image ID) for Obuchowski's clustered
    estimator; None for ordinary DeLong.
    """
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    pos = _labels(y)
    n1 = int(pos.sum())
    n0 = pos.size - n1
    k = v.shape[0]
    if n1 == 0 or n0 == 0:
        nan = np.full(k, np.nan)
        return DeLong(nan, np.full((k, k), np.nan), n1, n0, None)
    auc = v[:, pos].mean(axis=1)
    if clusters is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            s10 = _cov(v[:, pos] - auc[:, None], n1 - 1)
            s01 = _cov(v[:, ~pos] - auc[:, None], n0 - 1)
        return DeLong(auc, s10 / n1 + s01 / n0, n1, n0, None)
    _, cl = np.unique(np.asarray(clusters), return_inverse=True)
    cl = cl.ravel()
    if cl.size != pos.size:
        raise ValueError("clusters must give one code per row")
    n_cl = int(cl.max()) + 1
    m_c = np.bincount(cl, weights=pos, minlength=n_cl)  # positives per cluster
    n_c = np.bincount(cl, minlength=n_cl) - m_c
    i10 = int((m_c > 0).sum())
    i01 = int((n_c > 0).sum())
    a10 = np.empty((k, n_cl))
    a01 = np.empty((k, n_cl))
    for r in range(k):
        a10[r] = np.bincount(cl, weights=np.where(pos, v[r], 0.0), minlength=n_cl)
        a01[r] = np.bincount(cl, weights=np.where(pos, 0.0, v[r]), minlength=n_cl)
    a10 -= auc[:, None] * m_c
    a01 -= auc[:, None] * n_c
    with np.errstate(invalid="ignore", divide="ignore"):
        s10 = i10 / ((i10 - 1) * n1) * (a10 @ a10.T) if i10 > 1 else np.full((k, k), np.nan)
        s01 = i01 / ((i01 - 1) * n0) * (a01 @ a01.T) if i01 > 1 else np.full((k, k), np.nan)
        s11 = n_cl / (n_cl - 1) * (a10 @ a01.T) if n_cl > 1 else np.full((k, k), np.nan)
    cov = s10 / n1 + s01 / n0 + (s11 + s11.T) / (n1 * n0)
    return DeLong(auc, cov, n1, n0, n_cl)


def _cov(centred: np.ndarray, ddof_n: int) -> np.ndarray:
    if ddof_n < 1:
        return np.full((centred.shape[0],) * 2, np.nan)
    return centred @ centred.T / ddof_n


def delong(scores, y, clusters=None) -> DeLong:
    """AUCs of each row of ``scores`` (k, n) (or one 1-D score) for labels ``y`` and their
    covariance; ``clusters`` switches to the clustered (Obuchowski) estimator."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    v = np.stack([placement_values(row, y) for row in s])
    return delong_from_placements(v, y, clusters)


def paired_z(auc: np.ndarray, cov: np.ndarray, i: int, j: int) -> PairedAUC:
    """Test AUC_i - AUC_j from a DeLong result.

    A variance of the difference that is zero up to rounding (below 1e-12 of the two
    variances: identical rankings) gives p = 1 when the difference is exactly 0 and NaN
    otherwise (no test possible).
    """
    diff = float(auc[i] - auc[j])
    var = float(cov[i, i] + cov[j, j] - 2.0 * cov[i, j])
    if not np.isfinite(diff) or not np.isfinite(var):
        z = p = np.nan
    elif var <= 1e-12 * float(cov[i, i] + cov[j, j]):
        z, p = (0.0, 1.0) if diff == 0.0 else (np.nan, np.nan)
    else:
        z = diff / np.sqrt(var)
        p = float(2.0 * norm.sf(abs(z)))
    return PairedAUC(float(auc[i]), float(auc[j]), diff, var, float(z), float(p))


def delong_test(score_a, score_b, y, clusters=None) -> PairedAUC:
    """DeLong's paired test of two AUCs on the same rows (clustered when ``clusters`` given)."""
    res = delong(np.stack([np.asarray(score_a, float), np.asarray(score_b, float)]), y, clusters)
    return paired_z(res.auc, res.cov, 0, 1)


__all__ = [
    "DeLong",
    "PairedAUC",
    "delong",
    "delong_from_placements",
    "delong_test",
    "paired_z",
    "placement_values",
]
