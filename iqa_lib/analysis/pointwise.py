"""Point-wise analysis: P(M | Q) fitted on 80% of the image IDs, scored on the other 20%.

AUC of the fitted model (``auc``), AUC of the raw score with higher Q = more likely correct
(``auc_raw``) and cross-entropy (``ce``), each with a percentile interval from a bootstrap
of the test image IDs (every variant of a drawn image comes along: the rows of one image
are not independent). One split and one set of resamples serve every (task model, Q) pair.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from iqa_lib import defaults
from iqa_lib.analysis.common import label_cols, resolve
from iqa_lib.analysis.io import ScoreSet
from iqa_lib.analysis.sample_size import class_image_counts, small_auc
from iqa_lib.stats import _kernels as K
from iqa_lib.stats.bootstrap import cluster_weights, percentile_ci
from iqa_lib.stats.logistic import (
    MAX_ITER,
    RIDGE,
    STATUS_NAMES,
    TOL,
    sorted_blocks,
    weights_for_kernel,
)
from iqa_lib.stats.splits import group_test_mask


def fit_and_score(x_train, y_train, x_test, y_test, *, max_iter=MAX_ITER, tol=TOL, ridge=RIDGE):
    """Fit on the training rows, score on the test rows: a dict of coefficients and metrics."""
    a, b, status, n_iter = K.fit_one(x_train, y_train, max_iter, tol, ridge, np.nan, np.nan)
    auc, auc_raw, ce = K.eval_fit(x_test, y_test, a, b)
    return {
        "intercept": float(a),
        "slope": float(b),
        "status": STATUS_NAMES[int(status)],
        "auc": float(auc),
        "auc_raw": float(auc_raw),
        "ce": float(ce),
    }


def row_losses(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Per-row log-loss of sigmoid(a + b x), clipped like sklearn's log_loss."""
    eta = a + b * x
    return np.minimum(np.logaddexp(0.0, eta) - y * eta, K.LOSS_CAP)


@dataclass
class AucWork:
    """The point-wise fits and raw-AUC bootstrap replicates of every (Q, task model), which
    the point-wise table and the paired tests share (computed once by :func:`auc_work`).

    ``raw[q][j]``: raw-score AUC of Q for task model ``models[j]`` on the test image IDs
    (column 0) and on each of the ``n_bootstrap`` cluster resamples (columns 1..B).
    ``fits[q]``: (intercept, slope, status code) arrays over the task models.
    ``sorted_test[q]``: (order, blocks) of Q's test rows sorted by score.
    """

    key: tuple
    source: weakref.ref  # the ScoreSet it was computed from (an id could be reused once freed)
    test: np.ndarray
    test_cluster: np.ndarray
    n_img: int
    weights: np.ndarray
    fits: dict
    sorted_test: dict
    raw: dict


def _work_key(qs, models, test_fraction, n_bootstrap, seed) -> tuple:
    return (tuple(qs), tuple(models), float(test_fraction), int(n_bootstrap), seed)


def auc_work(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    *,
    test_fraction: float = defaults.TEST_FRACTION,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    progress: bool = False,
) -> AucWork:
    """Fit every (Q, task model) on the training image IDs and bootstrap its raw AUC on the
    test image IDs: the expensive part of :func:`pointwise` and of
    :func:`iqa_lib.analysis.paired.paired_tests`, done once for both (pass ``work=``)."""
    qs, models = resolve(scores, q_names, task_models)
    test = group_test_mask(scores.image, test_fraction, seed)
    train = ~test
    test_img, test_cluster = np.unique(scores.image[test], return_inverse=True)
    test_cluster = test_cluster.astype(np.int64)
    n_img = test_img.size
    # row 0: every test image once (the point estimate); rows 1..B: resamples of image IDs
    weights = np.ones((1 + max(n_bootstrap, 0), n_img))
    if n_bootstrap > 0:
        weights[1:] = cluster_weights(n_img, n_bootstrap, np.random.default_rng([seed, 1]))
    weights_t = weights_for_kernel(weights)
    y_tr = np.concatenate([scores.m[m][train] for m in models])
    y_te = {m: np.ascontiguousarray(scores.m[m][test]) for m in models}
    n_tr = int(train.sum())
    starts = np.arange(len(models) + 1, dtype=np.int64) * n_tr
    fits, sorted_test, raw = {}, {}, {}
    for q in tqdm(qs, desc="point-wise", disable=not progress, leave=False):
        x = scores.q[q].astype(np.float64)
        # one parallel call fits this Q against every task model
        a, b, status, _ = K.fit_groups(
            np.tile(x[train], len(models)), y_tr, starts, MAX_ITER, TOL, RIDGE
        )
        fits[q] = (a, b, status)
        order, blocks = sorted_blocks(np.ascontiguousarray(x[test]))
        sorted_test[q] = (order, blocks)
        cl_sorted = test_cluster[order]
        raw[q] = [
            K.bootstrap_auc_sorted(y_te[m][order], cl_sorted, blocks, weights_t) for m in models
        ]
    key = _work_key(qs, models, test_fraction, n_bootstrap, seed)
    return AucWork(key, weakref.ref(scores), test, test_cluster, int(n_img), weights, fits, sorted_test, raw)


def ensure_work(
    work: AucWork | None, scores, qs, models, test_fraction, n_bootstrap, seed, progress=False
) -> AucWork:
    """``work`` when it was computed for these scores, variables and options (else an error);
    computed here when ``None``."""
    if work is None:
        return auc_work(scores, qs, models, test_fraction=test_fraction, n_bootstrap=n_bootstrap,
                        seed=seed, progress=progress)
    if work.source() is not scores or work.key != _work_key(qs, models, test_fraction, n_bootstrap, seed):
        raise ValueError("work= was computed for other scores, Q variables, task models or options")
    return work


def pointwise(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    *,
    test_fraction: float = defaults.TEST_FRACTION,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
    progress: bool = False,
    work: AucWork | None = None,
) -> pd.DataFrame:
    """One row per (task model, Q): fit, AUC/AUC_raw/CE on the held-out image IDs with CIs.

    Columns: task_model, scorer, q, kind, n_train, n_test, n_test_images,
    n_test_pos_images, n_test_neg_images (test images with a correct / an incorrect row),
    small_n (too few of either for the AUC interval to mean anything, see
    :mod:`iqa_lib.analysis.sample_size`), test_accuracy, intercept, slope, status, auc,
    auc_ci_low, auc_ci_high, auc_raw, auc_raw_ci_low, auc_raw_ci_high, ce, ce_ci_low,
    ce_ci_high, n_boot_valid. ``work``: :func:`auc_work` output for the same arguments
    (shared with the paired tests), computed here when not given.
    """
    qs, models = resolve(scores, q_names, task_models)
    work = ensure_work(work, scores, qs, models, test_fraction, n_bootstrap, seed, progress)
    test, test_cluster, n_img, weights = work.test, work.test_cluster, work.n_img, work.weights
    boot_n = weights[1:] @ np.bincount(test_cluster, minlength=n_img).astype(np.float64)
    y_te = {m: np.ascontiguousarray(scores.m[m][test]) for m in models}
    n_tr = int((~test).sum())
    class_images = {m: class_image_counts(y_te[m], test_cluster) for m in models}
    rows = []
    for q in qs:
        x_te = np.ascontiguousarray(scores.q[q].astype(np.float64)[test])
        a, b, status = work.fits[q]
        for j, model in enumerate(models):
            yt = y_te[model]
            raw = work.raw[q][j]
            st = STATUS_NAMES[int(status[j])]
            fitted = _fitted_auc(raw, b[j], st)
            loss = row_losses(x_te, yt, a[j], b[j])
            row = {
                **label_cols(scores, q, model),
                "n_train": n_tr,
                "n_test": int(yt.size),
                "n_test_images": int(n_img),
                "n_test_pos_images": class_images[model][0],
                "n_test_neg_images": class_images[model][1],
                "small_n": bool(small_auc(*class_images[model])),
                "test_accuracy": float(yt.mean()),
                "intercept": float(a[j]),
                "slope": float(b[j]),
                "status": st,
                "auc": fitted[0],
                "auc_raw": raw[0],
                "ce": float(loss.mean()),
            }
            if n_bootstrap > 0:
                ce_b = (
                    weights[1:] @ np.bincount(test_cluster, weights=loss, minlength=n_img)
                ) / boot_n
                for name, reps in (("auc", fitted[1:]), ("auc_raw", raw[1:]), ("ce", ce_b)):
                    lo, hi = percentile_ci(reps, level)
                    row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
                row["n_boot_valid"] = int(np.isfinite(raw[1:]).sum())
            rows.append(row)
    return pd.DataFrame(rows)


def _fitted_auc(raw: np.ndarray, slope: float, status: str) -> np.ndarray:
    """AUC of the fitted model from raw-score AUCs: flipped for a negative slope."""
    if status in ("constant_m", "empty"):
        return np.full_like(raw, np.nan)
    if slope > 0:
        return raw
    if slope < 0:
        return 1.0 - raw
    return np.where(np.isfinite(raw), 0.5, np.nan)
