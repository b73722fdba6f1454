"""Content controls: cross-validated P(M | Q) within each label and within each image ID.

Per label (paper section 4.2, Figure 20b): the image IDs of each label are dealt to
``n_folds`` folds (all variants of an image in one fold). Per image ID (Figure 20a): the
variants of each image (clean + corrupted copies) are dealt to folds, stratified by M.
Every (group, fold) is one small logistic fit, all run in one compiled batch.

Folds are scored only when the training side has both classes and the test side has both
classes; the others are counted, never averaged in: ``n_groups_constant_m`` (M constant over
the whole group, no fit at all), ``n_folds_train_constant``, ``n_folds_test_constant``,
``n_folds_empty`` (a group smaller than n_folds). ``n_folds_separable`` counts scored folds
whose training data were perfectly separable (fitted with the small ridge, see
:mod:`iqa_lib.stats.logistic`). Means and standard deviations are over groups, of each
group's mean over its scored folds (``mean_auc_folds`` averages over scored folds instead).

Sample sizes: ``mean_n_test_fold`` / ``min_n_test_fold`` are the held-out rows of a
scored fold (one fold's AUC rests on that many rows); ``small_n`` flags a mean over fewer
than :data:`iqa_lib.analysis.sample_size.SMALL_N_GROUPS` scored groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from iqa_lib import defaults
from iqa_lib.analysis.common import label_cols, n_workers, parallel_map, resolve
from iqa_lib.analysis.io import ScoreSet
from iqa_lib.analysis.sample_size import small_groups
from iqa_lib.stats import _kernels as K
from iqa_lib.stats.logistic import cv_groups, group_score_order, group_starts
from iqa_lib.stats.splits import kfold_by_cluster, kfold_within_groups


def summarise_cv(res: dict[str, np.ndarray], group_has_both: np.ndarray) -> dict[str, float]:
    """Means, standard deviations and counts from :func:`cv_groups` output."""
    st = res["status"]
    fitted = (st != K.CONSTANT_M) & (st != K.EMPTY)
    scored = fitted & np.isfinite(res["auc"])
    live = group_has_both[:, None]
    out: dict[str, float] = {
        "n_groups": int(group_has_both.size),
        "n_groups_constant_m": int((~group_has_both).sum()),
        "n_folds_scored": int(scored.sum()),
        "n_folds_train_constant": int(((st == K.CONSTANT_M) & live).sum()),
        "n_folds_test_constant": int((fitted & ~scored).sum()),
        "n_folds_empty": int(((st == K.EMPTY) & live).sum()),
        "n_folds_separable": int((scored & (st == K.SEPARABLE)).sum()),
        "n_folds_not_converged": int((scored & (st == K.NOT_CONVERGED)).sum()),
    }
    n_scored = scored.sum(axis=1)
    used = n_scored > 0
    out["n_groups_scored"] = int(used.sum())
    nt = res["n_test"][scored] if "n_test" in res else np.zeros(0)
    out["mean_n_test_fold"] = float(nt.mean()) if nt.size else np.nan
    out["min_n_test_fold"] = int(nt.min()) if nt.size else 0
    out["small_n"] = bool(small_groups(out["n_groups_scored"]))
    for name in ("auc", "auc_raw", "ce"):
        vals = np.where(scored, res[name], 0.0)
        per_group = vals[used].sum(axis=1) / n_scored[used]
        out[f"mean_{name}"] = float(per_group.mean()) if used.any() else np.nan
        out[f"sd_{name}"] = float(per_group.std(ddof=1)) if used.sum() > 1 else np.nan
        out[f"mean_{name}_folds"] = float(vals.sum() / scored.sum()) if scored.any() else np.nan
    return out


def _both_classes(y: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    n = np.bincount(groups, minlength=n_groups)
    k = np.bincount(groups, weights=y, minlength=n_groups)
    return (k > 0) & (k < n)


def _run(
    scores: ScoreSet,
    groups: np.ndarray,
    folds_for,
    qs,
    models,
    n_folds,
    progress,
    desc,
    return_groups,
    workers=None,
):
    """One CV per (Q, task model). With ``workers`` > 1 (default: numba's thread count) the
    Qs run on a pool of threads, each Q's pairs on one thread (nogil kernels); with 1 they
    run in turn and each kernel spreads its groups over numba's threads. Both give the
    same numbers, bit for bit."""
    n_groups = int(groups.max()) + 1
    presorted = group_starts(groups, n_groups)
    workers = n_workers() if workers is None else int(workers)
    if workers > len(qs):  # too few Qs to keep the pool busy: spread each kernel's groups
        workers = 1
    # folds and class counts depend on the task model only: computed once, up front
    folds = {m: folds_for(scores.m[m]) for m in models}
    both = {m: _both_classes(scores.m[m], groups, n_groups) for m in models}

    def one(q):
        # one sort by Q inside every group serves all the task models
        order = group_score_order(scores.q[q], presorted, parallel=workers <= 1)
        out = []
        for model in models:
            res = cv_groups(
                scores.q[q],
                scores.m[model],
                groups,
                folds[model],
                n_folds,
                n_groups,
                presorted=presorted,
                parallel=workers <= 1,
                score_order=order,
            )
            cols = label_cols(scores, q, model)
            row = {**cols, **summarise_cv(res, both[model])}
            out.append((row, _group_frame(res, both[model], cols) if return_groups else None))
        return out

    # one task per Q, Q-major as before: the row order does not depend on the workers
    out = [
        pair
        for per_q in parallel_map(one, qs, workers, progress=progress, desc=desc)
        for pair in per_q
    ]
    table = pd.DataFrame([row for row, _ in out])
    if return_groups:
        return table, pd.concat([g for _, g in out], ignore_index=True)
    return table


def _group_frame(res, both, cols) -> pd.DataFrame:
    st = res["status"]
    scored = (st != K.CONSTANT_M) & (st != K.EMPTY) & np.isfinite(res["auc"])
    n = scored.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame(
            {
                "group": np.arange(both.size),
                "both_classes": both,
                "n_folds_scored": n,
                "auc": np.where(scored, res["auc"], 0).sum(1) / n,
                "auc_raw": np.where(scored, res["auc_raw"], 0).sum(1) / n,
                "ce": np.where(scored, res["ce"], 0).sum(1) / n,
            }
        )
    for k, v in cols.items():
        frame[k] = v
    return frame


def per_label(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    *,
    n_folds: int = defaults.N_FOLDS,
    seed: int = defaults.SEED,
    progress: bool = False,
    return_groups: bool = False,
    workers: int | None = None,
):
    """Per-label 5-fold CV summary, one row per (task model, Q); see the module docstring.

    With ``return_groups`` also a per-label table (``group`` = position in the sorted
    labels). ``workers``: threads running the Q variables at once (default: numba's thread
    count); any value gives the same numbers, bit for bit.
    """
    qs, models = resolve(scores, q_names, task_models)
    _, groups = np.unique(scores.label, return_inverse=True)
    folds = kfold_by_cluster(groups, scores.image, n_folds, seed)
    return _run(
        scores,
        groups.astype(np.int64),
        lambda y: folds,
        qs,
        models,
        n_folds,
        progress,
        "per-label",
        return_groups,
        workers,
    )


def per_image(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    *,
    n_folds: int = defaults.N_FOLDS,
    seed: int = defaults.SEED,
    progress: bool = False,
    return_groups: bool = False,
    workers: int | None = None,
):
    """Per-image-ID 5-fold CV summary over each image's variants, stratified by M.

    With ``return_groups`` also a per-image table (``group`` = position among the image IDs
    present, in ``scores.image_ids`` order). ``workers`` as in :func:`per_label`.
    """
    qs, models = resolve(scores, q_names, task_models)
    _, groups = np.unique(scores.image, return_inverse=True)
    groups = groups.astype(np.int64)
    return _run(
        scores,
        groups,
        lambda y: kfold_within_groups(groups, n_folds, seed, stratify=y),
        qs,
        models,
        n_folds,
        progress,
        "per-image",
        return_groups,
        workers,
    )
