"""Kendall, Spearman and Pearson correlations, point estimates and bootstrap intervals.

Point estimates and p-values come from scipy.stats (kendalltau = tau-b, spearmanr,
pearsonr). The bootstrap recomputes all three for every resample at once: Pearson row-wise,
Spearman as Pearson on per-row average ranks, Kendall tau-b from pairwise sign matrices.
Each replicate equals what scipy gives on that resample (tested).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from iqa_lib import defaults
from iqa_lib.stats.bootstrap import bootstrap_indices, percentile_ci
from iqa_lib.stats.checks import as_float, same_length

STATS = ("krcc", "srcc", "plcc")


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) matrices; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    sxx = np.einsum("ij,ij->i", xc, xc)
    syy = np.einsum("ij,ij->i", yc, yc)
    sxy = np.einsum("ij,ij->i", xc, yc)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    r[(sxx <= 0) | (syy <= 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of each row pair: Pearson on average ranks (ties share their mean rank)."""
    return pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))


def kendall_rows(x: np.ndarray, y: np.ndarray, max_cells: int = 20_000_000) -> np.ndarray:
    """Kendall tau-b of each row pair, from the signs of all pairwise differences.

    tau-b = sum sx*sy / sqrt(sum sx^2 * sum sy^2) over pairs i<j, which is scipy's
    (P - Q) / sqrt((n0 - n1)(n0 - n2)). Rows are processed in chunks of at most
    ``max_cells`` pairwise cells to bound memory.
    """
    n_rows, n = x.shape
    out = np.empty(n_rows)
    chunk = max(1, max_cells // max(1, n * n))
    iu = np.triu_indices(n, k=1)
    for s in range(0, n_rows, chunk):
        xs, ys = x[s : s + chunk], y[s : s + chunk]
        sx = np.sign(xs[:, :, None] - xs[:, None, :])[:, iu[0], iu[1]]
        sy = np.sign(ys[:, :, None] - ys[:, None, :])[:, iu[0], iu[1]]
        num = np.einsum("ij,ij->i", sx, sy)
        den = np.sqrt(np.einsum("ij,ij->i", sx, sx) * np.einsum("ij,ij->i", sy, sy))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = num / den
        r[den == 0] = np.nan
        out[s : s + chunk] = r
    return np.clip(out, -1.0, 1.0)


ROW_FUNCS = {"krcc": kendall_rows, "srcc": spearman_rows, "plcc": pearson_rows}


def correlation_rows(x: np.ndarray, y: np.ndarray, stat: str) -> np.ndarray:
    """One correlation (``krcc``, ``srcc`` or ``plcc``) for each row pair of (B, n) matrices."""
    if stat not in ROW_FUNCS:
        raise ValueError(f"unknown correlation {stat!r}; choose from {STATS}")
    return ROW_FUNCS[stat](np.asarray(x, float), np.asarray(y, float))


def point_correlations(x, y) -> dict[str, tuple[float, float]]:
    """{stat: (r, p_value)} from scipy; NaN for a constant input (no crash, no warning)."""
    x = as_float(x, "x")
    y = as_float(y, "y")
    same_length(x=x, y=y)
    if len(x) < 2:
        raise ValueError(f"a correlation needs at least 2 points, got {len(x)}")
    out: dict[str, tuple[float, float]] = {}
    constant = np.ptp(x) == 0 or np.ptp(y) == 0
    for stat, func in (
        ("krcc", stats.kendalltau),
        ("srcc", stats.spearmanr),
        ("plcc", stats.pearsonr),
    ):
        if constant:
            out[stat] = (np.nan, np.nan)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = func(x, y)
        out[stat] = (float(res[0]), float(res[1]))
    return out


class Resampled:
    """One variable under a bootstrap index matrix, prepared so that a correlation with
    any other prepared variable is three row-wise dot products.

    ``values``/``ranks``: centred, unit-norm rows (NaN rows where a resample is constant);
    ``signs``: signs of all pairwise differences (float32, exact), ``sign_norm`` their
    sum of squares per row (pairs not tied).
    """

    def __init__(self, x: np.ndarray, idx: np.ndarray, max_cells: int = 20_000_000):
        xb = x[idx]
        self.values = _unit_rows(xb)
        self.ranks = _unit_rows(stats.rankdata(xb, axis=1))
        n_boot, n = xb.shape
        iu = np.triu_indices(n, k=1)
        self.signs = np.empty((n_boot, iu[0].size), dtype=np.float32)
        chunk = max(1, max_cells // max(1, n * n))
        for s in range(0, n_boot, chunk):
            part = xb[s : s + chunk]
            self.signs[s : s + chunk] = np.sign(part[:, iu[0]] - part[:, iu[1]])
        self.sign_norm = np.einsum("ij,ij->i", self.signs, self.signs, dtype=np.float64)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = xc / norm[:, None]
    out[norm <= 0] = np.nan
    return out


def resampled_correlations(rx: Resampled, ry: Resampled) -> dict[str, np.ndarray]:
    """{stat: replicates} for two variables prepared with the same index matrix."""
    kt_num = np.einsum("ij,ij->i", rx.signs, ry.signs, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        kt = kt_num / np.sqrt(rx.sign_norm * ry.sign_norm)
    kt[(rx.sign_norm == 0) | (ry.sign_norm == 0)] = np.nan
    return {
        "krcc": np.clip(kt, -1.0, 1.0),
        "srcc": np.clip(np.einsum("ij,ij->i", rx.ranks, ry.ranks), -1.0, 1.0),
        "plcc": np.clip(np.einsum("ij,ij->i", rx.values, ry.values), -1.0, 1.0),
    }


def bootstrap_correlations(
    x,
    y,
    n_boot: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
    idx: np.ndarray | None = None,
    resampled: tuple[Resampled, Resampled] | None = None,
) -> pd.DataFrame:
    """KRCC, SRCC, PLCC of ``x`` and ``y`` with percentile bootstrap intervals.

    One row per statistic: ``r`` (signed), ``abs_r``, ``p_value`` (scipy, for ``r``),
    ``ci_low``/``ci_high`` (signed r), ``abs_ci_low``/``abs_ci_high`` (the interval of |r|
    over the resamples, what the paper reports beside |r|), ``n`` points and ``n_boot_valid``
    (resamples where the statistic is defined: a resample of one repeated point is not).
    ``idx`` may pass a precomputed (B, n) index matrix so many pairs share the same draws,
    ``resampled`` the two variables already prepared with it (:class:`Resampled`).
    """
    x = as_float(x, "x")
    y = as_float(y, "y")
    n = same_length(x=x, y=y)
    point = point_correlations(x, y)
    if resampled is None:
        if idx is None:
            idx = bootstrap_indices(n, n_boot, seed)
        elif idx.shape[1] != n:
            raise ValueError(f"index matrix has {idx.shape[1]} columns for {n} points")
        resampled = (Resampled(x, idx), Resampled(y, idx))
    reps_all = resampled_correlations(*resampled)
    rows = []
    for stat in STATS:
        reps = reps_all[stat]
        lo, hi = percentile_ci(reps, level)
        alo, ahi = percentile_ci(np.abs(reps), level)
        r, p = point[stat]
        rows.append(
            {
                "stat": stat,
                "r": r,
                "abs_r": abs(r),
                "p_value": p,
                "ci_low": lo,
                "ci_high": hi,
                "abs_ci_low": alo,
                "abs_ci_high": ahi,
                "n": n,
                "n_boot_valid": int(np.isfinite(reps).sum()),
            }
        )
    return pd.DataFrame(rows)
