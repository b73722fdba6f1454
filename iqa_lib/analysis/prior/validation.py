"""Validation of the accuracy estimators: leave one corruption out, summary, verdict.

:func:`leave_one_corruption_out` fits every estimator of
:mod:`iqa_lib.analysis.prior.estimators` on clean + the other corruptions and predicts each
severity group of the held-out one, and its severities pooled (``pooled`` rows: a set that
mixes shifts, as a user's data may); :func:`summarize` turns its tidy table into mean / max
absolute errors with bootstrap intervals over held-out corruptions (the independent unit),
the severity groups' and the pooled sets' apart; :func:`verdict` says, per task model, which
estimators are usable, ranking them by the worse of the two means.

Why the pool: an estimator fitted on (corruption, severity) groups may not transfer to a set
that mixes them. For every estimator that averages per-image values (the Q-prior, AC, DoC,
ATC) the pool's error is at most the groups' mean error, but the set-level scores are not
means: the nuclear norm of ImageNet-C's pooled severities sat 8.8 points below their accuracy
(EfficientNet-Lite0) while it erred 1.8 on each severity alone. :func:`run_prior` does all
of it from a folder of score files (what ``iqa-kit prior`` writes).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from iqa_lib import defaults
from iqa_lib.analysis.groupwise import group_codes
from iqa_lib.analysis.inference import N_TOO_SMALL
from iqa_lib.analysis.io import CLEAN, KEYS, ScoreSet, load_scores, read_schema
from iqa_lib.analysis.prior.estimators import (
    IMAGENET_CLASSES,
    cot_top1_error,
    fit_q_line,
    fit_q_prior,
    group_mean,
    label,
    label_marginal,
    own_group_predictions,
)
from iqa_lib.analysis.prior.logit_estimators import LOGIT_METHODS
from iqa_lib.analysis.prior.logit_validation import (
    LogitContext,
    ModelLogits,
    Prediction,
    logit_context,
    logit_fold_predictions,
)
from iqa_lib.analysis.sample_size import small_groups
from iqa_lib.scoring.logits import read_logits
from iqa_lib.stats.bootstrap import cluster_weights, percentile_ci

MIN_CORRUPTIONS = 2
TABLE_COLUMNS = [
    "method", "scorer", "q", "kind", "task_model", "corruption", "severity", "n",
    "predicted", "actual", "error", "abs_error", "abs_error_pts", "reference_accuracy", "pooled",
]
SUMMARY_KEYS = ["method", "scorer", "q", "kind", "task_model"]
USABLE_MEAN_PTS = 5.0  # a usable estimate is, on average, within 5 accuracy points
TASK_AGNOSTIC_KINDS = ("nr_iqa", "zero_shot")
OWN_GROUP_METHODS = ("ac", "doc", "atc_mc", "atc_ne")
QUALITY_METHODS = ("q_prior", "q_line")  # estimators that read any Q, task-agnostic ones included
# defined with the clean images as their in-distribution data: not fitted without them
CLEAN_CHECK_EXCLUDED = ("cot", "aline_s", "aline_d")


# --------------------------------------------------------------------------- leave one corruption out


def file_positions(path: Path, df: pd.DataFrame, scores: ScoreSet, what: str) -> np.ndarray:
    """For each row of ``scores``, its row in the file ``path`` whose keys are ``df``'s."""
    img = scores.image_ids.get_indexer(df["image_id"].astype(str))
    cor = scores.corruptions.get_indexer(df["corruption"].astype(str))
    key_file = (img.astype(np.int64) * len(scores.corruptions) + cor) * 1000 + df["severity"].to_numpy()
    key_rows = (scores.image.astype(np.int64) * len(scores.corruptions) + scores.corruption) * 1000
    key_rows = key_rows + scores.severity
    order = np.argsort(key_file, kind="stable")
    pos = np.searchsorted(key_file[order], key_rows)
    pos = np.minimum(pos, len(order) - 1)
    if (key_file[order][pos] != key_rows).any():
        raise ValueError(f"{path}: {what} missing for some rows of the aligned scores")
    return order[pos]


def read_predictions(scores_dir: str | Path, scores: ScoreSet, model: str) -> np.ndarray:
    """The ``pred`` column of ``<model>.parquet`` aligned with the rows of ``scores``."""
    path = Path(scores_dir) / f"{model}.parquet"
    names = pq.read_schema(path).names
    if "pred" not in names:
        raise ValueError(f"{path}: no 'pred' column (the predicted class COT needs); rescore it")
    df = pq.read_table(path, columns=[*KEYS, "pred"]).to_pandas()
    return df["pred"].to_numpy(np.int64)[file_positions(path, df, scores, "'pred'")]


def read_model_logits(scores_dir: str | Path, scores: ScoreSet, model: str) -> ModelLogits | None:
    """``<model>.logits/logits.npy`` (memory-mapped) with each aligned row's position in it; None
    when the score file has no logits beside it."""
    path = Path(scores_dir) / f"{model}.parquet"
    logits = read_logits(path, pq.read_metadata(path).num_rows)
    if logits is None:
        return None
    df = pq.read_table(path, columns=list(KEYS)).to_pandas()
    return ModelLogits(logits, file_positions(path, df, scores, "logits"))


class LocoUnsupported(ValueError):
    """The data cannot support leave-one-corruption-out (no clean rows, too few corruptions)."""


def check_loco_data(scores: ScoreSet, where: str = "the scores") -> list[str]:
    """The held-out corruptions; raise a clear error when the data cannot support LOCO."""
    if not scores.clean_mask().any():
        raise LocoUnsupported(
            f"{where}: no clean rows (corruption 'clean'): the reference of every estimator "
            "includes the clean images; score the clean images too"
        )
    present = set(np.unique(scores.corruption).tolist())
    held = [c for i, c in enumerate(scores.corruptions) if c != CLEAN and i in present]
    if len(held) < MIN_CORRUPTIONS:
        raise LocoUnsupported(
            f"{where}: {len(held)} corruption(s) ({', '.join(held) or 'none'}); leave-one-"
            f"corruption-out needs at least {MIN_CORRUPTIONS} (one held out, the others to fit)"
        )
    return held


@dataclass(frozen=True)
class _Fold:
    """One held-out corruption of one task model: the reference rows, the target rows and
    the target's severity groups with their sizes and M's actual accuracy."""

    ref: np.ndarray  # bool mask: the rows every estimator is fitted on
    tgt: np.ndarray  # row indices of the held-out corruption
    severities: np.ndarray
    inv: np.ndarray  # each target row's severity group
    n: np.ndarray  # rows per group (float64)
    actual: np.ndarray
    ref_acc: float


def _fold(scores: ScoreSet, m: np.ndarray, code: int) -> _Fold:
    ref = scores.corruption != code
    tgt = np.flatnonzero(~ref)
    sev, inv = np.unique(scores.severity[tgt], return_inverse=True)
    n = np.bincount(inv, minlength=sev.size).astype(np.float64)
    return _Fold(ref, tgt, sev, inv, n, group_mean(m[tgt], inv, n), float(m[ref].mean()))


def _rows_of(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[rows]


def _q_kind(scores: ScoreSet, model: str, q: tuple[str, str]) -> str:
    """A task model's own q_p/q_h/q_l are kind ``own``; any other Q keeps its scorer's kind."""
    return "own" if q[0] == model else scores.kinds[q[0]]


def _q_prior_predictions(
    scores: ScoreSet, model: str, m: np.ndarray, fold: _Fold, qs: list[tuple[str, str]]
) -> list[Prediction]:
    """The Q-prior on every Q; a task model's own q_p/q_h/q_l are kind ``own``."""
    out: list[Prediction] = []
    for q in qs:
        fit = fit_q_prior(scores.q[q][fold.ref], m[fold.ref])
        p = fit.predict_proba(scores.q[q][fold.tgt])
        out.append(("q_prior", q[0], q[1], _q_kind(scores, model, q), group_mean(p, fold.inv, fold.n), None))
    return out


def _q_line_predictions(
    scores: ScoreSet, model: str, m: np.ndarray, fold: _Fold, qs: list[tuple[str, str]]
) -> list[Prediction]:
    """The Q-line on every Q: M's accuracy on each reference group against the group's mean Q,
    a least-squares line, read at a target set's mean Q (the pooled set's own mean for the
    pool, which clipping to [0, 1] can make differ from its groups' average)."""
    ref_groups = group_codes(scores, include_clean=True)[0][fold.ref]
    out: list[Prediction] = []
    for q in qs:
        line = fit_q_line(scores.q[q][fold.ref], m[fold.ref], ref_groups)
        target = scores.q[q][fold.tgt]
        groups = line.predict(group_mean(target, fold.inv, fold.n))
        pooled = float(line.predict(target.mean())) if fold.severities.size > 1 else None
        out.append(("q_line", q[0], q[1], _q_kind(scores, model, q), groups, pooled))
    return out


def _cot_top1_groups(
    scores: ScoreSet, fold: _Fold, pred: np.ndarray, qp: np.ndarray, n_classes: int
) -> tuple[np.ndarray, float | None]:
    """Accuracy by the COT approximation per severity group and on the groups pooled (None for
    one group), the marginal from the reference."""
    marg = label_marginal(scores.label[fold.ref], n_classes)
    p, q = pred[fold.tgt], qp[fold.tgt]
    groups = np.asarray([1.0 - cot_top1_error(p[fold.inv == j], q[fold.inv == j], marg)
                         for j in range(fold.severities.size)])
    return groups, (1.0 - cot_top1_error(p, q, marg) if fold.severities.size > 1 else None)


def _own_predictions(
    scores: ScoreSet, model: str, m: np.ndarray, fold: _Fold, pred: np.ndarray | None, n_classes: int
) -> list[Prediction]:
    """AC, DoC, ATC-MC, ATC-NE (with q_h) and COT-top1 (with ``pred``) from M's own q_p/q_h."""
    qp = scores.q.get((model, "q_p"))
    if qp is None:
        return []
    qh = scores.q.get((model, "q_h"))
    own = own_group_predictions(
        {"q_p": qp[fold.ref], "q_h": _rows_of(qh, fold.ref), "correct": m[fold.ref]},
        {"q_p": qp[fold.tgt], "q_h": _rows_of(qh, fold.tgt)}, fold.inv, fold.severities.size)
    out: list[Prediction] = [(method, model, "q_h" if method == "atc_ne" else "q_p", "own", own[method], None)
                             for method in OWN_GROUP_METHODS if method in own]
    if pred is not None:
        out.append(("cot_top1", model, "q_p", "own", *_cot_top1_groups(scores, fold, pred, qp, n_classes)))
    return out


def _prediction_rows(preds: list[Prediction], fold: _Fold, model: str, corruption: str) -> list[dict]:
    """One row per severity group and, with two or more, one ``pooled`` row (severity 0) for
    the groups together: a prediction's own pooled value, else its groups' row-weighted mean."""
    rows = [{
        "method": method, "scorer": scorer, "q": variant, "kind": kind,
        "task_model": model, "corruption": corruption,
        "severity": int(fold.severities[j]), "n": int(fold.n[j]), "predicted": float(p[j]),
        "actual": float(fold.actual[j]), "reference_accuracy": fold.ref_acc, "pooled": False,
    } for method, scorer, variant, kind, p, _ in preds for j in range(fold.severities.size)]
    if fold.severities.size < 2:
        return rows
    actual = float(np.average(fold.actual, weights=fold.n))
    return rows + [{
        "method": method, "scorer": scorer, "q": variant, "kind": kind,
        "task_model": model, "corruption": corruption, "severity": 0, "n": int(fold.n.sum()),
        "predicted": float(np.average(p, weights=fold.n)) if pooled is None else float(pooled),
        "actual": actual, "reference_accuracy": fold.ref_acc, "pooled": True,
    } for method, scorer, variant, kind, p, pooled in preds]


def _validated_models(scores: ScoreSet, task_models: list[str] | None) -> list[str]:
    models = scores.task_models if task_models is None else list(task_models)
    missing = [m for m in models if m not in scores.m]
    if missing:
        raise ValueError(f"no correctness 'correct' for task model(s) {missing}")
    if not models:
        raise ValueError("no task model with a 'correct' column among the scores")
    return models


def _class_count(scores: ScoreSet, predictions: dict[str, np.ndarray], n_classes: int) -> int:
    """A dataset with more classes than ``n_classes`` (ImageNet's) keeps them all."""
    top = [int(scores.label.max()) + 1] + [int(p.max()) + 1 for p in predictions.values() if p.size]
    return max(n_classes, *top)


def leave_one_corruption_out(scores: ScoreSet, *args: Any, **options: Any) -> pd.DataFrame:
    """For each task model and held-out corruption: fit every estimator on clean + the other
    corruptions (all severities), predict each severity group of the held-out one: the table
    of :func:`validate_estimators` (its arguments), without the clean check. Held-out rows never
    enter a fit. One row per (method, Q, task model, corruption, severity), and per (method, Q,
    task model, corruption) one ``pooled`` row (severity 0) for a corruption held out at two or
    more severities: the same fit's prediction for its severities together.
    """
    return validate_estimators(scores, *args, **options, hold_out_clean=False)[0]


def validate_estimators(
    scores: ScoreSet,
    task_models: list[str] | None = None,
    q_names: list[tuple[str, str]] | None = None,
    predictions: dict[str, np.ndarray] | None = None,
    n_classes: int = IMAGENET_CLASSES,
    logits: dict[str, ModelLogits] | None = None,
    hold_out_clean: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`leave_one_corruption_out`'s table and the clean check beside it (same columns).

    ``q_names`` are the Q variables for the Q-prior and the Q-line (default: every Q in
    ``scores``; a task model's own q_p/q_h/q_l are labelled kind ``own``). ``predictions`` maps
    task model -> aligned ``pred`` (for ``cot_top1``; without it that method is skipped).
    ``logits`` maps task model -> its kept logits
    (:class:`~iqa_lib.analysis.prior.logit_validation.ModelLogits`), adding COT, MaNo, the
    nuclear norm and, with three or more such models, ALine-S/-D; models without logits get
    none of these rows.

    The clean check: every estimator fitted on the corrupted groups only and read on the
    clean images, one set per task model. Leaving one corruption out always keeps the clean
    images in the fit, so it never tests the sets users meet most, nearly clean ones: an
    estimator that bends away from the clean group (a straight line through mostly corrupted
    groups, a calibration that only holds under shift) passes it unseen. Left out of the
    check: :data:`CLEAN_CHECK_EXCLUDED`, whose definitions take the clean images as their
    in-distribution data (COT's temperature, ALine's agreement), so they cannot be fitted
    without them.
    """
    held_out = check_loco_data(scores)
    models = _validated_models(scores, task_models)
    qs = list(scores.q) if q_names is None else [tuple(q) for q in q_names]
    predictions = predictions or {}
    n_classes = _class_count(scores, predictions, n_classes)
    ctx = logit_context(scores, logits, predictions)
    rows: list[dict] = []
    clean_rows: list[dict] = []
    # the clean check's context computes neither COT nor ALine: CLEAN_CHECK_EXCLUDED
    clean_ctx = None if ctx is None else replace(ctx, cot=False, agreement=None)
    for model in models:
        for c in held_out:
            rows += _fold_rows(scores, model, c, qs, predictions, n_classes, ctx)
        if hold_out_clean:
            clean_rows += _fold_rows(scores, model, CLEAN, qs, predictions, n_classes, clean_ctx)
    inputs = [c for c in TABLE_COLUMNS if c not in ("error", "abs_error", "abs_error_pts")]
    return _with_errors(pd.DataFrame(rows, columns=inputs)), _with_errors(pd.DataFrame(clean_rows, columns=inputs))


def _with_errors(table: pd.DataFrame) -> pd.DataFrame:
    table["error"] = table["predicted"] - table["actual"]
    table["abs_error"] = table["error"].abs()
    table["abs_error_pts"] = 100 * table["abs_error"]
    return table[TABLE_COLUMNS]


def _fold_rows(
    scores: ScoreSet, model: str, corruption: str, qs: list, predictions: dict[str, np.ndarray],
    n_classes: int, ctx: LogitContext | None,
) -> list[dict]:
    """Every estimator's rows for one task model with ``corruption`` held out."""
    m = scores.m[model]
    code = scores.corruptions.get_loc(corruption)
    fold = _fold(scores, m, code)
    preds: list[Prediction] = [
        ("reference", model, "m", "baseline", np.full(fold.severities.size, fold.ref_acc), None),
        *_q_prior_predictions(scores, model, m, fold, qs),
        *_q_line_predictions(scores, model, m, fold, qs),
        *_own_predictions(scores, model, m, fold, predictions.get(model), n_classes),
        *logit_fold_predictions(scores, model, ctx, code, fold.ref, fold.tgt, fold.severities, fold.inv),
    ]
    return _prediction_rows(preds, fold, model, str(corruption))


# --------------------------------------------------------------------------- summary


def pooled_mask(table: pd.DataFrame) -> np.ndarray:
    """Which rows are pooled sets (a table without the column has none)."""
    if "pooled" not in table:
        return np.zeros(len(table), dtype=bool)
    return table["pooled"].fillna(False).to_numpy(bool)


def _per_corruption(g: pd.DataFrame, corruptions: list[str]) -> pd.DataFrame:
    return g.groupby("corruption")["abs_error_pts"].agg(["sum", "count", "max"]).reindex(corruptions)


def _boot_mean(per: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ per["sum"].fillna(0).to_numpy()) / (weights @ per["count"].fillna(0).to_numpy())


def _pooled_columns(p: pd.DataFrame | None, corruptions: list[str], weights: np.ndarray, level: float) -> dict:
    """Mean absolute error over the pooled sets, with its interval over the same resamples."""
    if p is None or not len(p):
        return {"pooled_mean_abs_error_pts": np.nan, "pooled_ci_low": np.nan, "pooled_ci_high": np.nan,
                "n_pooled_sets": 0}
    lo, hi = percentile_ci(_boot_mean(_per_corruption(p, corruptions), weights), level)
    return {"pooled_mean_abs_error_pts": float(p["abs_error_pts"].mean()), "pooled_ci_low": lo,
            "pooled_ci_high": hi, "n_pooled_sets": int(len(p))}


def summarize(
    table: pd.DataFrame,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
    clean: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean and max absolute error (accuracy points) per method, Q and task model over the
    held-out (corruption, severity) groups, and the mean over the pooled sets apart.

    Intervals are percentile intervals over resamples of the held-out corruptions (the
    independent unit: a corruption's severity groups share its fit and its images), the
    same resamples for every row. The max's interval cannot exceed the observed max (a
    bootstrap of a maximum is biased low): read it as a lower bound on the worst case.
    ``selection_error_pts``, the worse of the groups' and the pooled sets' mean, is what
    rows are sorted and ranked by: an estimator is only as good as it is on either kind of set.
    With ``clean`` (:func:`validate_estimators`' clean check), each row's error on the clean
    images held out: ``clean_error_pts`` (predicted minus actual, points; NaN where the check
    was not run or the estimator is left out of it) and ``clean_n``.
    """
    pooled = pooled_mask(table)
    groups, pools = table[~pooled], table[pooled]
    corruptions = sorted(groups["corruption"].unique())
    weights = cluster_weights(len(corruptions), n_bootstrap, seed).astype(np.float64)
    pool_by_key = dict(iter(pools.groupby(SUMMARY_KEYS, sort=False))) if len(pools) else {}
    out = []
    for key, g in groups.groupby(SUMMARY_KEYS, sort=False):
        per = _per_corruption(g, corruptions)
        present = per["count"].notna().to_numpy()
        mx = per["max"].fillna(-np.inf).to_numpy()
        boot_max = np.where(weights > 0, mx[None, :], -np.inf).max(axis=1)
        boot_max = np.where(np.isfinite(boot_max), boot_max, np.nan)
        mlo, mhi = percentile_ci(_boot_mean(per, weights), level)
        xlo, xhi = percentile_ci(boot_max, level)
        mean = float(g["abs_error_pts"].mean())
        pooled_cols = _pooled_columns(pool_by_key.get(key), corruptions, weights, level)
        out.append({
            **dict(zip(SUMMARY_KEYS, key, strict=True)),
            "mean_abs_error_pts": mean,
            "mean_ci_low": mlo, "mean_ci_high": mhi,
            "max_abs_error_pts": float(g["abs_error_pts"].max()),
            "max_ci_low": xlo, "max_ci_high": xhi,
            "bias_pts": float(100 * g["error"].mean()),
            "n_groups": int(len(g)), "n_corruptions": int(present.sum()),
            **pooled_cols,
            "selection_error_pts": float(np.nanmax([mean, pooled_cols["pooled_mean_abs_error_pts"]])),
            "n_bootstrap": int(n_bootstrap),
        })
    summary = _with_clean_check(pd.DataFrame(out), clean)
    return summary.sort_values(["task_model", "selection_error_pts"], kind="stable").reset_index(drop=True)


def _with_clean_check(summary: pd.DataFrame, clean: pd.DataFrame | None) -> pd.DataFrame:
    """The clean check's signed error and image count beside each summary row."""
    if clean is None or not len(clean):
        return summary.assign(clean_error_pts=np.nan, clean_n=np.nan)
    check = clean[~pooled_mask(clean)].assign(clean_error_pts=lambda t: 100 * t["error"], clean_n=lambda t: t["n"])
    return summary.merge(check[[*SUMMARY_KEYS, "clean_error_pts", "clean_n"]], on=SUMMARY_KEYS, how="left")


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class _Resamples:
    """The LOCO table and one set of resamples of its held-out corruptions, for paired gaps."""

    table: pd.DataFrame
    weights: np.ndarray
    corruptions: list[str]
    level: float


def _paired_gap(a: pd.Series, b: pd.Series, boot: _Resamples) -> tuple[float, float, float]:
    """Mean absolute error of estimator ``a`` minus ``b`` (points), with a percentile interval
    over the same resamples of held-out corruptions for both (a paired bootstrap)."""
    table, weights = boot.table, boot.weights

    def per_corruption(r: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        sel = np.ones(len(table), dtype=bool)
        for k in SUMMARY_KEYS:
            sel &= (table[k] == r[k]).to_numpy()
        g = table[sel].groupby("corruption")["abs_error_pts"].agg(["sum", "count"]).reindex(boot.corruptions)
        return g["sum"].fillna(0).to_numpy(), g["count"].fillna(0).to_numpy()

    (sa, ca), (sb, cb) = per_corruption(a), per_corruption(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = (weights @ sa) / (weights @ ca) - (weights @ sb) / (weights @ cb)
    lo, hi = percentile_ci(diff, boot.level)
    return float(sa.sum() / ca.sum() - sb.sum() / cb.sum()), lo, hi


def _evidence_size(table: pd.DataFrame | None, model: str) -> dict:
    """Groups, held-out corruptions and the smallest group's images behind a model's verdict.

    Each group's accuracy is what the estimators are scored against: from fewer than
    :data:`~iqa_lib.analysis.sample_size.SMALL_N_GROUP_IMAGES` images it is itself too noisy
    (and the groups share their images) for an error difference of a few points to mean
    anything, so the verdict is marked small-n and states no comparison.
    """
    if table is None or not len(table):
        return {"n_groups": np.nan, "n_corruptions": np.nan, "min_group_images": np.nan, "small_n": False}
    rows = table[table["task_model"] == model].drop_duplicates(["corruption", "severity"])
    n_groups, min_images = len(rows), float(rows["n"].min()) if len(rows) else np.nan
    return {"n_groups": n_groups, "n_corruptions": int(rows["corruption"].nunique()),
            "min_group_images": min_images,
            "small_n": bool(small_groups(n_groups, min_images))}


def _first(rows: pd.DataFrame) -> pd.Series | None:
    return rows.iloc[0] if len(rows) else None


def _mae(row: pd.Series | None, column: str = "mean_abs_error_pts") -> float:
    return float(row[column]) if row is not None and column in row.index else np.nan


def _pooled_mae(row: pd.Series | None) -> float:
    return _mae(row, "pooled_mean_abs_error_pts")


def _best_columns(best_own: pd.Series | None, best_agnostic: pd.Series | None) -> dict:
    return {
        "best_own": label(best_own) if best_own is not None else "-",
        "best_own_mae_pts": _mae(best_own),
        "best_own_pooled_mae_pts": _pooled_mae(best_own),
        "best_own_clean_error_pts": _mae(best_own, "clean_error_pts"),
        "best_task_agnostic": label(best_agnostic) if best_agnostic is not None else "-",
        "best_task_agnostic_mae_pts": _mae(best_agnostic),
        "best_task_agnostic_ci": (f"{best_agnostic['mean_ci_low']:.1f}-{best_agnostic['mean_ci_high']:.1f}"
                                  if best_agnostic is not None else "-"),
    }


def _gap(a: pd.Series, b: pd.Series, point: float, boot: _Resamples | None) -> tuple[float, float, float]:
    """``a``'s mean absolute error minus ``b``'s: the summary's difference alone, or paired
    bootstrap estimate and interval when the table's resamples are given."""
    return (point, np.nan, np.nan) if boot is None else _paired_gap(a, b, boot)


def _gap_columns(
    best_own: pd.Series | None, best_agnostic: pd.Series | None, base: pd.Series | None,
    boot: _Resamples | None,
) -> dict:
    """The best task-agnostic Q estimator against M's own best (gap) and against the baseline (gain)."""
    out = dict.fromkeys(("gap_pts", "gap_ci_low", "gap_ci_high",
                         "gain_over_baseline_pts", "gain_ci_low", "gain_ci_high"), np.nan)
    if best_agnostic is None:
        return out
    if best_own is not None:
        out["gap_pts"], out["gap_ci_low"], out["gap_ci_high"] = _gap(
            best_agnostic, best_own, _mae(best_agnostic) - _mae(best_own), boot)
    if base is not None:
        out["gain_over_baseline_pts"], out["gain_ci_low"], out["gain_ci_high"] = _gap(
            base, best_agnostic, _mae(base) - _mae(best_agnostic), boot)
    return out


def _model_verdict(
    model: str, g: pd.DataFrame, table: pd.DataFrame | None, usable_pts: float, boot: _Resamples | None
) -> dict:
    """One task model's verdict row from its summary rows ``g``."""
    rank = "selection_error_pts" if "selection_error_pts" in g else "mean_abs_error_pts"
    g = g.sort_values(rank, kind="stable")
    base = _first(g[g["method"] == "reference"])
    base_mae = _mae(base) if base is not None else float("inf")
    base_rank = _mae(base, rank) if base is not None else float("inf")
    pooled_high = g["pooled_ci_high"] if "pooled_ci_high" in g else pd.Series(np.nan, index=g.index)
    clean_err = g["clean_error_pts"].abs() if "clean_error_pts" in g else pd.Series(np.nan, index=g.index)
    usable = g[(g["mean_ci_high"] < usable_pts) & ~(pooled_high >= usable_pts) & (g[rank] < base_rank)
               & ~(clean_err > usable_pts)]
    best_agnostic = _first(g[g["method"].isin(QUALITY_METHODS) & g["kind"].isin(TASK_AGNOSTIC_KINDS)])
    best_own = _first(g[g["kind"] == "own"])
    row = {
        "task_model": model,
        "baseline_mae_pts": base_mae,
        "usable": ", ".join(label(r) for _, r in usable.iterrows()) or "none",
        **_best_columns(best_own, best_agnostic),
        **_gap_columns(best_own, best_agnostic, base, boot),
        **_evidence_size(table, model),
    }
    row |= _logit_columns(g)
    if row["small_n"]:
        row["usable"] = N_TOO_SMALL
    return row


def _logit_columns(g: pd.DataFrame) -> dict:
    """The estimators from kept logits that were validated, and the best of them; nothing
    (no columns) when the task model's score file kept no logits."""
    rows = g[g["method"].isin(list(LOGIT_METHODS))]
    if not len(rows):
        return {}
    best = rows.iloc[0]  # g is sorted by the worse of the groups' and the pooled sets' mean error
    return {"logit_methods": ", ".join(label(r) for _, r in rows.iterrows()),
            "best_logit": label(best), "best_logit_mae_pts": _mae(best),
            "best_logit_clean_error_pts": _mae(best, "clean_error_pts"),
            "best_logit_pooled_mae_pts": _pooled_mae(best),
            "best_logit_ci": f"{best['mean_ci_low']:.1f}-{best['mean_ci_high']:.1f}"}


def verdict(
    summary: pd.DataFrame,
    table: pd.DataFrame | None = None,
    usable_pts: float = USABLE_MEAN_PTS,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
) -> pd.DataFrame:
    """Per task model: which estimators are usable and how far the best task-agnostic Q is
    from M's own confidence, from the summary's numbers.

    Usable: the mean absolute error's upper interval bound is below ``usable_pts`` over the
    severity groups and over the pooled sets, and the worse of the two means beats the
    no-shift baseline's (predicting the reference accuracy). The best of a family is the one
    whose worse mean is lowest.
    Task-agnostic: a Q-prior or Q-line on a no-reference IQA or zero-shot score. With ``table``, the
    gaps (best task-agnostic minus best own; best task-agnostic minus baseline) get paired
    bootstrap intervals over held-out corruptions.
    """
    boot = None
    if table is not None:
        table = table[~pooled_mask(table)]  # the paired gaps and the evidence are the severity groups'
        corruptions = sorted(table["corruption"].unique())
        weights = cluster_weights(len(corruptions), n_bootstrap, seed).astype(np.float64)
        boot = _Resamples(table, weights, corruptions, level)
    rows = [_model_verdict(model, g, table, usable_pts, boot)
            for model, g in summary.groupby("task_model", sort=True)]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- from score files


def _default_task_models(scores: ScoreSet, scores_dir: str | Path) -> list[str]:
    """Every labelled task file; an unlabelled one still serves as a Q for the Q-prior."""
    task_files = [s for s, k in scores.kinds.items() if k in ("classifier", "zero_shot")]
    wanted = [s for s in task_files if s in scores.m]
    unlabelled = [str(Path(scores_dir) / f"{s}.parquet") for s in task_files if s not in scores.m]
    if unlabelled and wanted:
        warnings.warn(f"{', '.join(unlabelled)}: no 'correct' column (unlabelled images): "
                      "used as Q only, not validated as a task model", stacklevel=3)
    elif unlabelled:
        wanted = task_files  # all unlabelled: _check_task_models names the first
    return wanted


def _check_task_models(scores: ScoreSet, scores_dir: str | Path, wanted: list[str]) -> None:
    for name in wanted:
        path = Path(scores_dir) / f"{name}.parquet"
        if name not in scores.kinds:
            raise ValueError(f"task model {name!r}: no score file {path} among the loaded scores")
        if name not in scores.m:
            raise ValueError(
                f"{path}: no 'correct' column (scored on unlabelled images): the validation "
                "needs labelled reference data; score labelled images, or leave it out of "
                "--task-models / analysis.task_models"
            )
    if not wanted:
        raise ValueError(f"{scores_dir}: no task-model score file (classifier or zero-shot) to validate")


def run_prior(
    scores_dir: str | Path,
    task_models: list[str] | None = None,
    scorers: list[str] | None = None,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
    n_classes: int = IMAGENET_CLASSES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the scores and return (LOCO table, summary): what ``iqa-kit prior`` writes."""
    scores = load_scores(scores_dir, scorers)
    wanted = list(task_models) if task_models else _default_task_models(scores, scores_dir)
    _check_task_models(scores, scores_dir, wanted)
    check_loco_data(scores, str(scores_dir))
    predictions = {name: read_predictions(scores_dir, scores, name) for name in wanted
                   if "pred" in read_schema(Path(scores_dir) / f"{name}.parquet").names}
    logits = {name: kept for name in wanted if (kept := read_model_logits(scores_dir, scores, name)) is not None}
    table, clean = validate_estimators(scores, list(wanted), predictions=predictions, n_classes=n_classes,
                                       logits=logits)
    return table, summarize(table, n_bootstrap, seed, level, clean)
