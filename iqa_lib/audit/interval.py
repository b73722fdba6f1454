"""A prediction interval for a task model's accuracy under shift, and whether a dataset lies in the reference.

The audit's bootstrap interval (:func:`iqa_lib.analysis.prior.estimators.estimate_accuracy`)
resamples the user's images with the reference fit held fixed: it says nothing about the error the
shift itself causes. This module adds the two things that do, both fitted on the task
model's reference (clean ImageNet and ImageNet-C) by leaving one corruption out, and both
validated the same way (``benchmarks/validate_prediction_interval.py``,
docs/mini-reproduction/prior.md):

- **prediction interval** (:func:`shift_fit`, :func:`prediction_interval`): split conformal
  over corruption *families*. Leave-one-corruption-out gives a residual (actual minus
  predicted accuracy) for each severity group of each held-out corruption; a family's
  score is its worst absolute residual over its severities and their pool (the five severities of one
  corruption share a fit and the same images, so the family, not the group, is the
  exchangeable unit). The half-width is the conformal quantile of the family scores,
  the ``ceil((F + 1) * level)``-th smallest of F (for 15 families at level 0.9: the
  largest), combined in quadrature (as independent errors) with the sampling error of a
  set of n images beyond that of a reference group, whose residuals already hold the noise
  of their own ~500 images: ``z * sqrt(kappa * p * (1 - p) * max(1/n - 1/n_ref, 0))``, with
  z the normal quantile of the level, p the prediction and kappa (at least 1) the
  reference's ratio of the per-image variance of (correct - the image's share of the
  estimate) to the binomial variance p(1 - p). Larger sets than the reference's groups
  keep the half-width of the reference's groups (never narrower).
- **in reference** (:func:`reference_check`): the distance from the dataset's confidence
  distribution (q_p and -q_h, each divided by its standard deviation over the reference)
  to the nearest reference group (corruption and severity, or clean): the mean absolute
  difference of their percentile functions (1st to 99th, a discretised Wasserstein-1),
  averaged over the two scores. It is compared with the same distance for held-out
  families: each severity group of a corruption left out, drawn at the user's n, against
  the groups of the other corruptions and clean; a family's score is its largest
  distance, and the threshold is the same conformal quantile over families (the median of
  :data:`N_DRAWS` draws). Farther than that, the data lie outside what leave-one-
  corruption-out has validated, and the audit gives no prediction interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from iqa_lib.audit.reference import CLEAN

PI_LEVEL = 0.9
QUANTILE_LEVELS = (np.arange(99) + 1) / 100  # 1st..99th percentile
N_DRAWS = 5
SEED = 0
CONFIDENCE_SCORES = {"q_p": ("q_p", 1.0), "-q_h": ("q_h", -1.0)}  # name -> (column, sign)


def conformal_quantile(scores, level: float = PI_LEVEL) -> float:
    """Split-conformal quantile: the ``ceil((m + 1) * level)``-th smallest of m scores.

    Infinite when m is too small for the level (a new score exceeds every one of them with
    probability above 1 - level).
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    k = math.ceil((s.size + 1) * level - 1e-9)
    return math.inf if k > s.size or s.size == 0 else float(s[k - 1])


def min_families(level: float = PI_LEVEL) -> int:
    """The fewest calibration units for which :func:`conformal_quantile` is finite."""
    m = 1
    while math.ceil((m + 1) * level - 1e-9) > m:
        m += 1
    return m


# --------------------------------------------------------------------------- interval


@dataclass(frozen=True)
class ShiftFit:
    """One estimator's conformal half-width from leave-one-corruption-out residuals."""

    method: str
    quantile: float  # conformal quantile of the family scores (accuracy, 0-1)
    families: int
    family_scores: dict[str, float]
    kappa: float  # var(correct - contribution) / (p (1 - p)), pooled over held-out groups
    n_reference: int  # images per held-out group (median)
    level: float


def shift_fit(table: pd.DataFrame, method: str, level: float = PI_LEVEL) -> ShiftFit:
    """The conformal fit of ``method`` from :func:`iqa_lib.audit.accuracy.loco_validation`'s table."""
    g = table[table["method"] == method]
    err = (g["actual"] - g["predicted"]).abs()
    fam = err.groupby(g["corruption"], sort=True).max()
    binom = (g["actual"] * (1 - g["actual"])).sum()
    kappa = float(g["var_d"].sum() / binom) if "var_d" in g and binom > 0 else 1.0
    return ShiftFit(method, conformal_quantile(fam.to_numpy(), level), int(fam.size),
                    {str(k): float(v) for k, v in fam.items()}, max(kappa, 1.0) if math.isfinite(kappa) else 1.0,
                    int(np.median(g["n"])) if len(g) else 0, level)


def sampling_sd(fit: ShiftFit, value: float, n: int) -> float:
    """Sampling sd of (actual - predicted) on n images beyond that of a reference group."""
    p = min(max(float(value), 0.0), 1.0)
    extra = max(1.0 / max(n, 1) - 1.0 / max(fit.n_reference, 1), 0.0)
    return math.sqrt(fit.kappa * p * (1 - p) * extra)


def prediction_interval(fit: ShiftFit, value: float, n: int) -> list[float] | None:
    """[lo, hi] in [0, 1] around ``value`` for a set of ``n`` images; None when not finite."""
    if not math.isfinite(fit.quantile):
        return None
    z = float(norm.ppf(1 - (1 - fit.level) / 2))
    half = math.hypot(fit.quantile, z * sampling_sd(fit, value, n))
    return [max(0.0, value - half), min(1.0, value + half)]


def _rank_words(m: int, level: float) -> str:
    k = math.ceil((m + 1) * level - 1e-9)
    if k == m:
        return f"the largest of those {m}"
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"the {k}{suffix} smallest of those {m}"


def interval_words(fit: ShiftFit) -> str:
    """How the interval was made, in words."""
    return (
        f"{fit.level:.0%} split-conformal prediction interval for the accuracy on these images under an "
        f"unseen shift like one ImageNet-C corruption: leaving each of the reference's {fit.families} "
        f"corruptions out in turn, each corruption's worst absolute error over its severities and "
        f"their pool; the "
        f"half-width is {_rank_words(fit.families, fit.level)} ({100 * fit.quantile:.1f} points), combined in quadrature with "
        f"{norm.ppf(1 - (1 - fit.level) / 2):.2f} sampling sd of these n images beyond that of the "
        f"reference's {fit.n_reference}-image groups (binomial variance x {fit.kappa:.2f}, the "
        f"reference's ratio)"
    )


# --------------------------------------------------------------------------- in reference


@dataclass(frozen=True)
class ReferenceGroups:
    """Each reference group's standardised confidence scores and percentile functions."""

    keys: list[tuple[str, int]]  # (corruption, severity) per group
    values: list[np.ndarray]  # per group: (S, m) standardised scores
    quantiles: np.ndarray  # (G, S, L)
    names: list[str]  # score names, e.g. ["q_p", "-q_h"]
    scale: np.ndarray  # (S,) reference standard deviation of each score


def _scores(frame: pd.DataFrame | Mapping[str, Any], names: list[str]) -> np.ndarray:
    return np.stack([CONFIDENCE_SCORES[s][1] * np.asarray(frame[CONFIDENCE_SCORES[s][0]], dtype=np.float64)
                     for s in names])


def reference_groups(data: pd.DataFrame, names: list[str] | None = None) -> ReferenceGroups:
    """Group ``data`` (corruption, severity, q_p, optionally q_h) by corruption and severity."""
    if names is None:
        names = [s for s, (col, _) in CONFIDENCE_SCORES.items() if col in data]
    raw = _scores(data, names)
    scale = raw.std(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    std = raw / scale[:, None]
    keys, values = [], []
    codes = data.groupby(["corruption", "severity"], sort=True).ngroup().to_numpy()
    for code, (key, _) in enumerate(data.groupby(["corruption", "severity"], sort=True)):
        keys.append((str(key[0]), int(key[1])))
        values.append(std[:, codes == code])
    quant = np.stack([np.quantile(v, QUANTILE_LEVELS, axis=1).T for v in values])
    return ReferenceGroups(keys, values, quant, list(names), scale)


def _distances(target_q: np.ndarray, groups_q: np.ndarray) -> np.ndarray:
    """(..., S, L) target percentile functions against (G, S, L) groups -> (..., G)."""
    return np.abs(target_q[..., None, :, :] - groups_q).mean(axis=(-1, -2))


def nearest(groups: ReferenceGroups, target_std: np.ndarray, allowed: np.ndarray | None = None
            ) -> tuple[float, tuple[str, int]]:
    """Distance from standardised target scores (S, n) to the nearest allowed group, and that group."""
    q = np.quantile(target_std, QUANTILE_LEVELS, axis=1).T
    d = _distances(q, groups.quantiles)
    if allowed is not None:
        d = np.where(allowed, d, np.inf)
    j = int(np.argmin(d))
    return float(d[j]), groups.keys[j]


def held_out_distances(groups: ReferenceGroups, n: int, seed: int = SEED, draws: int = N_DRAWS,
                       exclude: str | None = None) -> pd.DataFrame:
    """For each corruption family (but ``exclude``) and draw: its severity groups, subsampled to
    ``n`` images (whole when n is at least the group size, then one draw), against the groups
    of the other families and clean. One row per family, severity and draw."""
    rng = np.random.default_rng(seed)
    fam = np.array([k[0] for k in groups.keys])
    families = [f for f in pd.unique(fam) if f not in (CLEAN, exclude)]
    rows = []
    for f in families:
        allowed = (fam != f) & (fam != exclude)
        for j in np.flatnonzero(fam == f):
            v = groups.values[j]
            m = v.shape[1]
            if n >= m:
                q = groups.quantiles[j][None]
            else:
                idx = np.argsort(rng.random((draws, m)), axis=1)[:, :n]
                q = np.quantile(v[:, idx], QUANTILE_LEVELS, axis=2).transpose(2, 1, 0)  # (L, S, R) -> (R, S, L)
            d = np.where(allowed, _distances(q, groups.quantiles), np.inf).min(axis=1)
            rows += [{"corruption": f, "severity": groups.keys[j][1], "draw": r, "distance": float(x)}
                     for r, x in enumerate(d)]
    return pd.DataFrame(rows, columns=["corruption", "severity", "draw", "distance"])


def distance_threshold(groups: ReferenceGroups, n: int, level: float = PI_LEVEL, seed: int = SEED,
                       draws: int = N_DRAWS, exclude: str | None = None) -> tuple[float, int]:
    """The conformal quantile over families of each family's largest held-out distance at n
    images (median over draws), and the number of families."""
    t = held_out_distances(groups, n, seed, draws, exclude)
    if t.empty:
        return math.inf, 0
    per = t.groupby(["draw", "corruption"])["distance"].max()
    by_draw = per.groupby(level="draw").apply(lambda s: conformal_quantile(s.to_numpy(), level))
    return float(np.median(by_draw.to_numpy())), int(t["corruption"].nunique())


def reference_check(data: pd.DataFrame, target: pd.DataFrame | Mapping[str, Any], level: float = PI_LEVEL,
                    seed: int = SEED, draws: int = N_DRAWS) -> dict[str, Any]:
    """Whether ``target``'s confidence (q_p, and -q_h when both have it) lies within what the
    reference's held-out corruption families cover, at the target's n. See the module doc."""
    names = [s for s, (col, _) in CONFIDENCE_SCORES.items() if col in data and col in target]
    groups = reference_groups(data, names)
    t = _scores(target, names) / groups.scale[:, None]
    n = int(t.shape[1])
    dist, near = nearest(groups, t)
    threshold, families = distance_threshold(groups, n, level, seed, draws)
    scores = " and ".join(names)
    where = f"{near[0]}" + (f", severity {near[1]}" if near[0] != CLEAN else "")
    if not math.isfinite(threshold):
        return {"in_reference": None, "distance": dist, "threshold": None, "nearest": where,
                "reason": (f"Not checked whether these images lie in the reference: it has {families} "
                           f"corruption(s), too few to calibrate the check (needs {min_families(level)}).")}
    inside = dist <= threshold
    reason = (
        f"the {scores} distribution of these {n} images is {dist:.2f} (percentile distance, in "
        f"reference standard deviations) from the nearest reference group ({where}); held-out "
        f"ImageNet-C corruptions at n = {n} lie within {threshold:.2f} of theirs (the {level:.0%} "
        f"conformal bound over {families} corruptions)"
    )
    reason += (": inside what the reference covers." if inside else
               ": outside what the reference covers, where the validated error says nothing.")
    return {"in_reference": bool(inside), "distance": dist, "threshold": threshold, "nearest": where,
            "reason": reason[0].upper() + reason[1:]}
