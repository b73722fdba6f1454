"""Mild-corruption mixtures (paper section 6.3, Figures 21-22).

For each fraction p_c, a seeded p_c of the image IDs is replaced by one corrupted copy
drawn uniformly from the chosen corruptions and severities (default: the 15 ImageNet-C
corruptions present, severities 1-3); the other image IDs keep their clean row. A mixture
is a selection of rows of existing scores. Each gets the point-wise analysis (80/20 split
by image ID, no bootstrap) and a per-mixture description of every Q's distribution.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from iqa_lib import defaults
from iqa_lib.analysis.common import label_cols, parallel_map, resolve
from iqa_lib.analysis.io import ScoreSet
from iqa_lib.analysis.pointwise import fit_and_score
from iqa_lib.analysis.sample_size import class_image_counts, small_auc
from iqa_lib.corruptions import COMMON_CORRUPTIONS
from iqa_lib.stats.splits import group_test_mask

IMAGENET_C = COMMON_CORRUPTIONS  # the 15 of ImageNet-C
DEFAULT_FRACTIONS = tuple(round(0.01 * k, 2) for k in range(1, 21))
DEFAULT_SEVERITIES = (1, 2, 3)
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def _default_corruptions(names: list[str]) -> list[str]:
    """The ImageNet-C corruptions present, else (with a warning) every corruption present."""
    chosen = [c for c in IMAGENET_C if c in names]
    if not chosen:
        chosen = [c for c in names if c != "clean"]
        warnings.warn(
            f"none of the 15 ImageNet-C corruptions in the scores; mixing {chosen}",
            stacklevel=4,
        )
    return chosen


def _corruption_codes(scores: ScoreSet, corruptions) -> np.ndarray:
    names = list(scores.corruptions)
    if corruptions is None:
        chosen = _default_corruptions(names)
    else:
        chosen = list(corruptions)
        bad = [c for c in chosen if c not in names]
        if bad:
            raise ValueError(f"mixture corruption(s) {bad} not in the scores; present: {names}")
    return np.array([names.index(c) for c in chosen], dtype=np.int16)


def make_mixture(
    scores: ScoreSet,
    fraction: float,
    corruptions=None,
    severities=DEFAULT_SEVERITIES,
    seed: int = defaults.SEED,
) -> np.ndarray:
    """Row indices of one mixture: one row per image ID with a clean row.

    round(fraction * n) of those image IDs (chosen with ``default_rng([seed, fraction in
    1e-6 units])``, so a mixture does not depend on which other fractions are run) take a
    corrupted row drawn uniformly among their rows in ``corruptions`` x ``severities``.
    Image IDs with no such row are never drawn for replacement.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"mixture fraction must be in [0, 1], got {fraction}")
    clean = scores.clean_mask()
    if not clean.any():
        raise ValueError("mixtures need clean rows (corruption 'clean') to start from")
    codes = _corruption_codes(scores, corruptions)
    cand = np.isin(scores.corruption, codes) & np.isin(scores.severity, list(severities))
    n_img = len(scores.image_ids)
    clean_row = np.full(n_img, -1, dtype=np.int64)
    clean_row[scores.image[clean]] = np.flatnonzero(clean)
    cand_rows = np.flatnonzero(cand)
    cand_rows = cand_rows[np.argsort(scores.image[cand_rows], kind="stable")]
    cand_img = scores.image[cand_rows]  # contiguous runs per image
    cand_count = np.bincount(cand_img, minlength=n_img)
    cand_start = np.concatenate(([0], np.cumsum(cand_count)[:-1]))
    images = np.flatnonzero(clean_row >= 0)
    eligible = images[cand_count[images] > 0]
    rng = np.random.default_rng([seed, round(fraction * 1_000_000)])
    n_replace = round(fraction * images.size)
    if n_replace > eligible.size:
        raise ValueError(
            f"fraction {fraction} needs {n_replace} image IDs with a corrupted copy, "
            f"only {eligible.size} have one"
        )
    chosen = rng.choice(eligible, size=n_replace, replace=False)
    pick = cand_start[chosen] + (rng.random(n_replace) * cand_count[chosen]).astype(np.int64)
    rows = clean_row.copy()
    rows[chosen] = cand_rows[pick]
    return np.sort(rows[images])


def _describe(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.quantile(x, QUANTILES), np.histogram(x, bins=edges)[0]


def mixtures(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    *,
    fractions=DEFAULT_FRACTIONS,
    corruptions=None,
    severities=DEFAULT_SEVERITIES,
    test_fraction: float = defaults.TEST_FRACTION,
    seed: int = defaults.SEED,
    n_bins: int = 50,
    progress: bool = False,
    workers: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Point-wise AUC per mixture and Q distributions; a dict of tidy tables.

    ``auc``: one row per (p_c, task model, Q) with the point-wise fit's auc, auc_raw, ce,
    the test size (n_test rows, n_test_images, and n_test_pos_images / n_test_neg_images:
    test images of M correct / incorrect) and ``small_n`` (too few test images in a class
    for the AUC to mean much, see :mod:`iqa_lib.analysis.sample_size`).
    ``summary``: mean (and sd) over mixtures of auc, auc_raw, ce per (task model, Q), the
    smallest n_test_images of a mixture, ``n_mixtures_small_n`` and ``small_n`` (any
    mixture flagged).
    ``quantiles``: per (p_c, Q) the quantiles ``QUANTILES``, mean and sd of Q.
    ``histogram``: per (p_c, Q) counts in ``n_bins`` bins shared by all mixtures of a Q.
    ``workers``: threads running the (p_c, Q) combinations at once (default: numba's thread
    count); any value gives the same numbers, bit for bit.
    """
    qs, models = resolve(scores, q_names, task_models)
    mixes = {
        float(f): make_mixture(scores, float(f), corruptions, severities, seed) for f in fractions
    }
    edges = {}
    for q in qs:
        x = scores.q[q]
        lo = min(float(x[r].min()) for r in mixes.values())
        hi = max(float(x[r].max()) for r in mixes.values())
        edges[q] = np.linspace(lo, hi if hi > lo else lo + 1.0, n_bins + 1)
    splits = {}
    for frac, rows in mixes.items():
        img = scores.image[rows]
        test = group_test_mask(img, test_fraction, seed)
        splits[frac] = (rows, img, test, int((~scores.clean_mask()[rows]).sum()))

    def one(item):
        """Every row one (p_c, Q) contributes: its description and its fit per task model."""
        frac, q = item
        rows, img, test, n_corrupted = splits[frac]
        x = scores.q[q][rows].astype(np.float64)
        x_tr, x_te = np.ascontiguousarray(x[~test]), np.ascontiguousarray(x[test])
        quant, hist = _describe(x, edges[q])
        q_row = {
            "p_c": frac,
            "scorer": q[0],
            "q": q[1],
            "kind": scores.kinds[q[0]],
            "n": int(x.size),
            "mean": float(x.mean()),
            "sd": float(x.std()),
            **{f"q{round(p * 100):02d}": v for p, v in zip(QUANTILES, quant, strict=True)},
        }
        e = edges[q]
        h_row = pd.DataFrame(
            {
                "p_c": frac,
                "scorer": q[0],
                "q": q[1],
                "bin_left": e[:-1],
                "bin_right": e[1:],
                "count": hist,
            }
        )
        fits = []
        for model in models:
            y = scores.m[model][rows]
            n_pos_img, n_neg_img = class_image_counts(y[test], img[test])
            res = fit_and_score(
                x_tr, np.ascontiguousarray(y[~test]), x_te, np.ascontiguousarray(y[test])
            )
            fits.append(
                {
                    "p_c": frac,
                    **label_cols(scores, q, model),
                    "n_images": int(rows.size),
                    "n_corrupted": n_corrupted,
                    "accuracy": float(y.mean()),
                    **res,
                    "n_test": int(test.sum()),
                    "n_test_images": int(np.unique(img[test]).size),
                    "n_test_pos_images": n_pos_img,
                    "n_test_neg_images": n_neg_img,
                    "small_n": bool(small_auc(n_pos_img, n_neg_img)),
                }
            )
        return q_row, h_row, fits

    # every (p_c, Q) is independent: a pool of threads (nogil kernels), results in order
    items = [(frac, q) for frac in mixes for q in qs]
    auc_rows, q_rows, h_rows = [], [], []
    for q_row, h_row, fits in parallel_map(
        one, items, workers, progress=progress, desc="mixtures"
    ):
        q_rows.append(q_row)
        h_rows.append(h_row)
        auc_rows.extend(fits)
    auc = pd.DataFrame(auc_rows)
    summary = (
        auc.groupby(["task_model", "scorer", "q", "kind"], sort=False)
        .agg(
            n_mixtures=("auc", "size"),
            mean_auc=("auc", "mean"),
            sd_auc=("auc", "std"),
            mean_auc_raw=("auc_raw", "mean"),
            mean_ce=("ce", "mean"),
            n_test_images=("n_test_images", "min"),
            n_mixtures_small_n=("small_n", "sum"),
            small_n=("small_n", "any"),
        )
        .reset_index()
    )
    return {
        "auc": auc,
        "summary": summary,
        "quantiles": pd.DataFrame(q_rows),
        "histogram": pd.concat(h_rows, ignore_index=True),
    }
