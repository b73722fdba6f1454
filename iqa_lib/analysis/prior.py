"""A prior on a task model's accuracy from quality, and the baselines it must beat.

Each estimator is fitted on labelled reference rows (clean images and known corruptions)
and predicts the top-1 accuracy of task model M on an unlabelled target set:

- ``q_prior`` (the paper's): fit P(M = 1 | Q) by logistic regression on the reference,
  predict the mean of P over the target's Q. Any Q works: a no-reference IQA score, another
  model's confidence, M's own q_p / q_h / q_l.
- ``ac``: average confidence, the mean of M's max-softmax q_p on the target.
- ``doc`` (Guillory et al. 2021): reference accuracy minus (reference AC - target AC).
- ``atc_mc`` / ``atc_ne`` (Garg et al. 2022): a threshold on the score (q_p, or the
  negative entropy -q_h) chosen so that the share of reference scores above it equals the
  reference accuracy; the prediction is the share of target scores above it.
- ``cot_top1``: an approximation of COT (Lu et al. 2023) from pred and q_p only (score files
  keep no softmax vector); see :func:`cot_top1_error`. :func:`cot_exact_error` is the
  published COT for a full probability matrix.
- ``reference``: the reference accuracy itself, the no-shift baseline every estimator
  must beat to be worth anything.

:func:`leave_one_corruption_out` validates them on ImageNet-C-like data and
:func:`summarize` turns its tidy table into mean / max absolute errors with bootstrap
intervals over held-out corruptions (the independent unit).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.analysis.inference import N_TOO_SMALL
from iqa_lib.analysis.io import CLEAN, KEYS, ScoreSet
from iqa_lib.analysis.sample_size import SMALL_N_GROUP_IMAGES, SMALL_N_GROUPS, small_groups

# method -> (what it uses, short description for tables and figures)
METHODS: dict[str, str] = {
    "q_prior": "Q-prior: mean of a logistic P(M=1|Q) fitted on the reference",
    "ac": "AC: mean max-softmax confidence q_p",
    "doc": "DoC: reference accuracy - (reference AC - target AC)",
    "atc_mc": "ATC with max confidence q_p",
    "atc_ne": "ATC with negative entropy -q_h",
    "cot_top1": "COT approximation from pred and q_p (not the published COT)",
    "reference": "reference accuracy (no-shift baseline)",
}
OWN_METHODS = ("ac", "doc", "atc_mc", "atc_ne", "cot_top1")
IMAGENET_CLASSES = 1000
MIN_CORRUPTIONS = 2
TABLE_COLUMNS = [
    "method", "scorer", "q", "kind", "task_model", "corruption", "severity", "n",
    "predicted", "actual", "error", "abs_error", "abs_error_pts", "reference_accuracy",
]


# --------------------------------------------------------------------------- estimators


def average_confidence(q_p) -> float:
    """AC: the mean max-softmax probability (a calibrated model's expected accuracy)."""
    return float(np.mean(np.asarray(q_p, dtype=np.float64)))


def doc_accuracy(reference_accuracy: float, reference_ac: float, target_ac: float) -> float:
    """DoC: the reference accuracy shifted by the drop in average confidence."""
    return float(reference_accuracy - (reference_ac - target_ac))


@dataclass(frozen=True)
class AtcThreshold:
    """Threshold t and tie weight w: a score counts 1 above t and w at exactly t.

    Scores tie (float32 q_p saturates at 1.0), so a strict threshold cannot always make the
    share above it equal the reference accuracy; counting ties at t with weight w can.
    """

    threshold: float
    tie_weight: float

    def contributions(self, scores) -> np.ndarray:
        """Each image's share of the prediction: 1 above the threshold, the tie weight at it."""
        s = np.asarray(scores, dtype=np.float64)
        return np.where(s > self.threshold, 1.0, np.where(s == self.threshold, self.tie_weight, 0.0))

    def predict(self, scores) -> float:
        """Estimated accuracy: the (tie-weighted) share of ``scores`` above the threshold."""
        s = np.asarray(scores, dtype=np.float64)
        if s.size == 0:
            return float("nan")
        above = np.count_nonzero(s > self.threshold)
        at = np.count_nonzero(s == self.threshold)
        return float((above + self.tie_weight * at) / s.size)


def fit_atc(scores, correct) -> AtcThreshold:
    """ATC's threshold on reference ``scores`` (higher = more confident) for 0/1 ``correct``.

    With k correct among n, t is the value where count(s > t) <= k <= count(s >= t) and the
    tie weight fills the gap, so ``predict(scores)`` returns k / n exactly.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    m = np.asarray(correct)
    if s.size == 0 or s.size != m.size:
        raise ValueError("ATC needs as many reference scores as correctness values, at least one")
    n, k = s.size, int(np.count_nonzero(m))
    if k == 0:
        return AtcThreshold(float(s[-1]), 0.0)  # nothing counts: above the top, ties weigh 0
    t = s[n - k]  # the k-th largest score
    above = n - int(np.searchsorted(s, t, side="right"))
    at = int(np.searchsorted(s, t, side="right") - np.searchsorted(s, t, side="left"))
    return AtcThreshold(float(t), (k - above) / at)


@dataclass(frozen=True)
class QPrior:
    """P(M = 1 | Q) = sigmoid(intercept + slope * Q), or a constant when M was constant."""

    intercept: float
    slope: float
    status: str
    constant: float | None = None  # the reference accuracy when no fit was possible

    def predict_proba(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if self.constant is not None:
            return np.full(q.shape, self.constant)
        from scipy.special import expit

        return expit(self.intercept + self.slope * q)

    def predict(self, q) -> float:
        """Estimated accuracy on a target: the mean predicted probability over its Q."""
        p = self.predict_proba(q)
        return float(p.mean()) if p.size else float("nan")


def fit_q_prior(q, correct) -> QPrior:
    """Fit the Q-prior with the kit's logistic regression (``iqa_lib.stats.logistic``).

    With an intercept, the maximum-likelihood fit's mean probability on the reference equals
    the reference accuracy; a Q without information (slope 0) predicts that everywhere.
    """
    from iqa_lib.stats.logistic import fit_logistic

    fit = fit_logistic(q, correct)
    if not fit.fitted:
        return QPrior(float("nan"), 0.0, fit.status, float(np.mean(correct)))
    return QPrior(fit.intercept, fit.slope, fit.status)


def label_marginal(labels, n_classes: int) -> np.ndarray:
    """Share of each class among the reference labels (COT's target marginal)."""
    lab = np.asarray(labels, dtype=np.int64)
    if lab.size == 0:
        raise ValueError("the label marginal needs at least one label")
    if lab.min() < 0 or lab.max() >= n_classes:
        raise ValueError(f"labels must be in 0..{n_classes - 1}, got {lab.min()}..{lab.max()}")
    return np.bincount(lab, minlength=n_classes) / lab.size


def cot_cost(probs) -> np.ndarray:
    """COT's cost between softmax vector p_i and one-hot e_k: ||p_i - e_k||_1 / 2 = 1 - p_ik."""
    return 1.0 - np.asarray(probs, dtype=np.float64)


def cot_exact_error(probs, marginal) -> float:
    """COT's predicted error (Lu et al. 2023): the optimal-transport cost between the target's
    softmax vectors (mass 1/n each) and the reference label marginal, cost 1 - p_ik.

    Solved as a linear programme with scipy's HiGHS (no extra dependency); the tests check
    it against POT's ``ot.emd2``. Classes without reference mass are dropped first.
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    p = np.asarray(probs, dtype=np.float64)
    b = np.asarray(marginal, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != b.size:
        raise ValueError(f"probs must be (n, {b.size}) for a marginal over {b.size} classes")
    keep = b > 0
    p, b = p[:, keep], b[keep] / b[keep].sum()
    n, k = p.shape
    if n == 0:
        return float("nan")
    idx = np.arange(n * k)
    rows = coo_matrix((np.ones(n * k), (idx // k, idx)), shape=(n, n * k))
    cols = coo_matrix((np.ones(n * k), (idx % k, idx)), shape=(k, n * k))
    res = linprog(
        cot_cost(p).ravel(),
        A_eq=vstack([rows, cols]).tocsr(),
        b_eq=np.concatenate([np.full(n, 1.0 / n), b]),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"COT linear programme failed: {res.message}")
    return float(res.fun)


def top1_probs(pred, q_p, n_classes: int) -> np.ndarray:
    """The softmax matrix ``cot_top1`` assumes: q_p on pred, the rest spread evenly."""
    pred = np.asarray(pred, dtype=np.int64)
    q = np.asarray(q_p, dtype=np.float64)
    p = np.repeat(((1.0 - q) / (n_classes - 1))[:, None], n_classes, axis=1)
    p[np.arange(pred.size), pred] = q
    return p


def cot_top1_error(pred, q_p, marginal) -> float:
    """COT's error on :func:`top1_probs` (NOT the published COT), in closed form.

    Score files keep pred and q_p, not the softmax vector, so this assumes the mass 1 - q_p
    is spread evenly over the K - 1 other classes. For that cost the transport problem has
    an exact shortcut: with r_i = (1 - q_i)/(K - 1) and s_i = q_i - r_i >= 0, the plan's
    value is sum_i r_i / n plus, for every class k, the largest s_i of the images predicted
    k filled up to the class's reference mass (a fractional knapsack per class); surplus
    mass is always routable to classes with spare capacity. The error is 1 minus that value
    (tests check it against POT). On synthetic softmax data (10-1000 classes, 27 settings of
    accuracy and confidence, ``benchmarks/cot_top1_gap.py``) it predicts 0.3-3.9 accuracy
    points below exact COT, 1.2 on average. Like exact COT, its accuracy never exceeds AC
    (every image pays at least 1 - q_p), so an under-confident model makes it biased low.
    """
    pred = np.asarray(pred, dtype=np.int64)
    q = np.asarray(q_p, dtype=np.float64)
    b = np.asarray(marginal, dtype=np.float64)
    n, k = q.size, b.size
    if n == 0:
        return float("nan")
    if pred.min() < 0 or pred.max() >= k:
        raise ValueError(f"predictions must be in 0..{k - 1}")
    r = (1.0 - q) / (k - 1)
    s = np.maximum(q - r, 0.0)
    order = np.lexsort((-s, pred))  # by class, largest s first
    ps, ss = pred[order], s[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))  # position in class
    cap = b[ps] * n  # class capacity in units of one image's mass 1/n
    share = np.clip(cap - rank, 0.0, 1.0)  # whole, fractional or no share of each image
    value = (r.sum() + (share * ss).sum()) / n
    return float(1.0 - value)


def own_contributions(reference: dict, target: dict) -> dict[str, np.ndarray]:
    """Per target image, its share of each own-output estimate, the fits made on ``reference``.

    ``reference``: M's labelled outputs (``q_p``, ``correct``, optionally ``q_h``, aligned);
    ``target``: ``q_p`` (and ``q_h``) on the new images. Each method's estimate is the mean of
    its array: AC (q_p), DoC (q_p shifted by reference accuracy minus reference AC), ATC-MC
    and ATC-NE (the tie-weighted indicator of the threshold). The one place these formulas
    live: the validation and the audit use it.
    """
    r_qp = np.asarray(reference["q_p"], dtype=np.float64)
    r_m = np.asarray(reference["correct"]).astype(np.int8)
    t_qp = np.asarray(target["q_p"], dtype=np.float64)
    if r_qp.size != r_m.size or not r_qp.size:
        raise ValueError("need aligned, non-empty reference q_p/correct")
    out = {"ac": t_qp, "doc": float(r_m.mean()) - average_confidence(r_qp) + t_qp,
           "atc_mc": fit_atc(r_qp, r_m).contributions(t_qp)}
    if reference.get("q_h") is not None and target.get("q_h") is not None:
        r_ne = -np.asarray(reference["q_h"], dtype=np.float64)
        out["atc_ne"] = fit_atc(r_ne, r_m).contributions(-np.asarray(target["q_h"], dtype=np.float64))
    return out


def estimate_accuracy(
    reference: dict[str, np.ndarray],
    target: dict[str, np.ndarray],
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """M's accuracy on unlabelled ``target`` images by AC, DoC, ATC-MC and ATC-NE.

    The interval is a percentile bootstrap over the target images with the reference fit
    held fixed: how much the estimate moves with another sample of images like these. The
    error under shift that :func:`leave_one_corruption_out` measures comes on top, so an
    audit shows both. What ``iqa-kit audit`` reports.
    """
    from iqa_lib.stats.bootstrap import percentile_ci

    per_image = own_contributions(reference, target)
    n = per_image["ac"].size
    if not n:
        raise ValueError("need at least one target image")
    rng = np.random.default_rng(seed)
    boot = {k: np.empty(n_bootstrap) for k in per_image}
    chunk = max(1, min(n_bootstrap, 2_000_000 // n))  # bounded memory for large targets
    for start in range(0, n_bootstrap, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))
        for k, values in per_image.items():
            boot[k][start:start + len(idx)] = values[idx].mean(axis=1)
    r_m = np.asarray(reference["correct"]).astype(np.int8)
    rows = []
    for method, values in per_image.items():
        lo, hi = percentile_ci(boot[method], level)
        rows.append({"method": method, "predicted": float(values.mean()), "ci_low": lo, "ci_high": hi,
                     "n_target": int(n), "n_reference": int(r_m.size),
                     "reference_accuracy": float(r_m.mean())})
    return pd.DataFrame(rows)


def own_group_predictions(reference: dict, target: dict, inv: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """Each own-output estimate per target group (``inv``: each target row's group code)."""
    counts = np.bincount(inv, minlength=n_groups).astype(np.float64)
    return {k: _group_mean(v, inv, counts) for k, v in own_contributions(reference, target).items()}


# --------------------------------------------------------------------------- validation


def read_predictions(scores_dir: str | Path, scores: ScoreSet, model: str) -> np.ndarray:
    """The ``pred`` column of ``<model>.parquet`` aligned with the rows of ``scores``."""
    import pyarrow.parquet as pq

    path = Path(scores_dir) / f"{model}.parquet"
    names = pq.read_schema(path).names
    if "pred" not in names:
        raise ValueError(f"{path}: no 'pred' column (the predicted class COT needs); rescore it")
    df = pq.read_table(path, columns=[*KEYS, "pred"]).to_pandas()
    img = scores.image_ids.get_indexer(df["image_id"].astype(str))
    cor = scores.corruptions.get_indexer(df["corruption"].astype(str))
    key_file = (img.astype(np.int64) * len(scores.corruptions) + cor) * 1000 + df["severity"].to_numpy()
    key_rows = (scores.image.astype(np.int64) * len(scores.corruptions) + scores.corruption) * 1000
    key_rows = key_rows + scores.severity
    order = np.argsort(key_file, kind="stable")
    pos = np.searchsorted(key_file[order], key_rows)
    pos = np.minimum(pos, len(order) - 1)
    if (key_file[order][pos] != key_rows).any():
        raise ValueError(f"{path}: 'pred' missing for some rows of the aligned scores")
    return df["pred"].to_numpy(np.int64)[order][pos]


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


def _group_mean(values: np.ndarray, codes: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.bincount(codes, weights=values.astype(np.float64), minlength=n.size) / n


def leave_one_corruption_out(
    scores: ScoreSet,
    task_models: list[str] | None = None,
    q_names: list[tuple[str, str]] | None = None,
    predictions: dict[str, np.ndarray] | None = None,
    n_classes: int = IMAGENET_CLASSES,
) -> pd.DataFrame:
    """For each task model and held-out corruption: fit every estimator on clean + the other
    corruptions (all severities), predict each severity group of the held-out one.

    ``q_names`` are the Q variables for the Q-prior (default: every Q in ``scores``; a task
    model's own q_p/q_h/q_l are labelled kind ``own``). ``predictions`` maps task model ->
    aligned ``pred`` (for ``cot_top1``; without it that method is skipped). Held-out rows
    never enter a fit. One row per (method, Q, task model, corruption, severity).
    """
    held_out = check_loco_data(scores)
    models = scores.task_models if task_models is None else list(task_models)
    missing = [m for m in models if m not in scores.m]
    if missing:
        raise ValueError(f"no correctness 'correct' for task model(s) {missing}")
    if not models:
        raise ValueError("no task model with a 'correct' column among the scores")
    qs = list(scores.q) if q_names is None else [tuple(q) for q in q_names]
    corr_names = np.asarray(scores.corruptions)
    top = [int(scores.label.max()) + 1] + [int(p.max()) + 1 for p in (predictions or {}).values() if p.size]
    n_classes = max(n_classes, *top)  # a dataset with more classes than ImageNet keeps them all
    rows: list[dict] = []
    for model in models:
        m = scores.m[model]
        pred = (predictions or {}).get(model)
        for c in held_out:
            code = scores.corruptions.get_loc(c)
            ref = scores.corruption != code
            tgt = np.flatnonzero(~ref)
            sev, inv = np.unique(scores.severity[tgt], return_inverse=True)
            n = np.bincount(inv, minlength=sev.size).astype(np.float64)
            actual = _group_mean(m[tgt], inv, n)
            ref_acc = float(m[ref].mean())
            preds: list[tuple[str, str, str, str, np.ndarray]] = []
            preds.append(("reference", model, "m", "baseline", np.full(sev.size, ref_acc)))
            for q in qs:
                fit = fit_q_prior(scores.q[q][ref], m[ref])
                p = fit.predict_proba(scores.q[q][tgt])
                kind = "own" if q[0] == model else scores.kinds[q[0]]
                preds.append(("q_prior", q[0], q[1], kind, _group_mean(p, inv, n)))
            qp = scores.q.get((model, "q_p"))
            qh = scores.q.get((model, "q_h"))
            if qp is not None:
                own = own_group_predictions(
                    {"q_p": qp[ref], "q_h": None if qh is None else qh[ref], "correct": m[ref]},
                    {"q_p": qp[tgt], "q_h": None if qh is None else qh[tgt]}, inv, sev.size)
                for method in ("ac", "doc", "atc_mc", "atc_ne"):
                    if method in own:
                        preds.append((method, model, "q_h" if method == "atc_ne" else "q_p", "own", own[method]))
                if pred is not None:
                    marg = label_marginal(scores.label[ref], n_classes)
                    cot = [1.0 - cot_top1_error(pred[tgt][inv == j], qp[tgt][inv == j], marg)
                           for j in range(sev.size)]
                    preds.append(("cot_top1", model, "q_p", "own", np.asarray(cot)))
            for method, scorer, variant, kind, p in preds:
                for j in range(sev.size):
                    rows.append({
                        "method": method, "scorer": scorer, "q": variant, "kind": kind,
                        "task_model": model, "corruption": str(corr_names[code]),
                        "severity": int(sev[j]), "n": int(n[j]), "predicted": float(p[j]),
                        "actual": float(actual[j]), "reference_accuracy": ref_acc,
                    })
    table = pd.DataFrame(rows)
    table["error"] = table["predicted"] - table["actual"]
    table["abs_error"] = table["error"].abs()
    table["abs_error_pts"] = 100 * table["abs_error"]
    return table[TABLE_COLUMNS]


SUMMARY_KEYS = ["method", "scorer", "q", "kind", "task_model"]


def summarize(
    table: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Mean and max absolute error (accuracy points) per method, Q and task model.

    Intervals are percentile intervals over resamples of the held-out corruptions (the
    independent unit: a corruption's severity groups share its fit and its images), the
    same resamples for every row. The max's interval cannot exceed the observed max (a
    bootstrap of a maximum is biased low): read it as a lower bound on the worst case.
    """
    from iqa_lib.stats.bootstrap import cluster_weights, percentile_ci

    corruptions = sorted(table["corruption"].unique())
    weights = cluster_weights(len(corruptions), n_bootstrap, seed).astype(np.float64)
    out = []
    for key, g in table.groupby(SUMMARY_KEYS, sort=False):
        per = g.groupby("corruption")["abs_error_pts"].agg(["sum", "count", "max"])
        per = per.reindex(corruptions)
        present = per["count"].notna().to_numpy()
        s = per["sum"].fillna(0).to_numpy()
        c = per["count"].fillna(0).to_numpy()
        mx = per["max"].fillna(-np.inf).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            boot_mean = (weights @ s) / (weights @ c)
        boot_max = np.where(weights > 0, mx[None, :], -np.inf).max(axis=1)
        boot_max = np.where(np.isfinite(boot_max), boot_max, np.nan)
        mlo, mhi = percentile_ci(boot_mean, level)
        xlo, xhi = percentile_ci(boot_max, level)
        out.append({
            **dict(zip(SUMMARY_KEYS, key, strict=True)),
            "mean_abs_error_pts": float(g["abs_error_pts"].mean()),
            "mean_ci_low": mlo, "mean_ci_high": mhi,
            "max_abs_error_pts": float(g["abs_error_pts"].max()),
            "max_ci_low": xlo, "max_ci_high": xhi,
            "bias_pts": float(100 * g["error"].mean()),
            "n_groups": int(len(g)), "n_corruptions": int(present.sum()),
            "n_bootstrap": int(n_bootstrap),
        })
    summary = pd.DataFrame(out)
    return summary.sort_values(["task_model", "mean_abs_error_pts"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- verdict

USABLE_MEAN_PTS = 5.0  # a usable estimate is, on average, within 5 accuracy points


def label(row) -> str:
    """A short name for a summary row: method and, for the Q-prior, its Q."""
    if row["method"] == "q_prior":
        return f"Q-prior({row['scorer']} {row['q']})" if row["q"] != "q" else f"Q-prior({row['scorer']})"
    return {"ac": "AC", "doc": "DoC", "atc_mc": "ATC-MC", "atc_ne": "ATC-NE",
            "cot_top1": "COT-top1 (approx.)", "reference": "reference accuracy"}.get(row["method"], row["method"])


def _paired_gap(
    table: pd.DataFrame, a: pd.Series, b: pd.Series, weights: np.ndarray, corruptions: list[str],
    level: float,
) -> tuple[float, float, float]:
    """Mean absolute error of estimator ``a`` minus ``b`` (points), with a percentile interval
    over the same resamples of held-out corruptions for both (a paired bootstrap)."""
    from iqa_lib.stats.bootstrap import percentile_ci

    def per_corruption(r: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        sel = np.ones(len(table), dtype=bool)
        for k in SUMMARY_KEYS:
            sel &= (table[k] == r[k]).to_numpy()
        g = table[sel].groupby("corruption")["abs_error_pts"].agg(["sum", "count"]).reindex(corruptions)
        return g["sum"].fillna(0).to_numpy(), g["count"].fillna(0).to_numpy()

    (sa, ca), (sb, cb) = per_corruption(a), per_corruption(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ sa) / (weights @ ca) - (weights @ sb) / (weights @ cb)
    lo, hi = percentile_ci(boot, level)
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


def verdict(
    summary: pd.DataFrame,
    table: pd.DataFrame | None = None,
    usable_pts: float = USABLE_MEAN_PTS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per task model: which estimators are usable and how far the best task-agnostic Q is
    from M's own confidence, from the summary's numbers.

    Usable: the mean absolute error's upper interval bound is below ``usable_pts`` and the
    point estimate beats the no-shift baseline (predicting the reference accuracy).
    Task-agnostic: a Q-prior on a no-reference IQA or zero-shot score. With ``table``, the
    gaps (best task-agnostic minus best own; best task-agnostic minus baseline) get paired
    bootstrap intervals over held-out corruptions.
    """
    weights = corruptions = None
    if table is not None:
        from iqa_lib.stats.bootstrap import cluster_weights

        corruptions = sorted(table["corruption"].unique())
        weights = cluster_weights(len(corruptions), n_bootstrap, seed).astype(np.float64)
    rows = []
    for model, g in summary.groupby("task_model", sort=True):
        g = g.sort_values("mean_abs_error_pts", kind="stable")
        base = g[g["method"] == "reference"]
        base_mae = float(base["mean_abs_error_pts"].iloc[0]) if len(base) else float("inf")
        usable = g[(g["mean_ci_high"] < usable_pts) & (g["mean_abs_error_pts"] < base_mae)]
        agnostic = g[(g["method"] == "q_prior") & g["kind"].isin(["nr_iqa", "zero_shot"])]
        own = g[g["kind"] == "own"]
        best_a = agnostic.iloc[0] if len(agnostic) else None
        best_o = own.iloc[0] if len(own) else None
        row = {
            "task_model": model,
            "baseline_mae_pts": base_mae,
            "usable": ", ".join(label(r) for _, r in usable.iterrows()) or "none",
            "best_own": label(best_o) if best_o is not None else "-",
            "best_own_mae_pts": float(best_o["mean_abs_error_pts"]) if best_o is not None else np.nan,
            "best_task_agnostic": label(best_a) if best_a is not None else "-",
            "best_task_agnostic_mae_pts": float(best_a["mean_abs_error_pts"]) if best_a is not None else np.nan,
            "best_task_agnostic_ci": (f"{best_a['mean_ci_low']:.1f}-{best_a['mean_ci_high']:.1f}"
                                      if best_a is not None else "-"),
            "gap_pts": np.nan, "gap_ci_low": np.nan, "gap_ci_high": np.nan,
            "gain_over_baseline_pts": np.nan, "gain_ci_low": np.nan, "gain_ci_high": np.nan,
        }
        if best_a is not None and best_o is not None:
            row["gap_pts"] = row["best_task_agnostic_mae_pts"] - row["best_own_mae_pts"]
        if best_a is not None and len(base):
            row["gain_over_baseline_pts"] = base_mae - row["best_task_agnostic_mae_pts"]
        row.update(_evidence_size(table, model))
        if row["small_n"]:
            row["usable"] = N_TOO_SMALL
        if weights is not None and best_a is not None:
            if best_o is not None:
                row["gap_pts"], row["gap_ci_low"], row["gap_ci_high"] = _paired_gap(
                    table, best_a, best_o, weights, corruptions, level)
            if len(base):
                d, lo, hi = _paired_gap(table, base.iloc[0], best_a, weights, corruptions, level)
                row["gain_over_baseline_pts"], row["gain_ci_low"], row["gain_ci_high"] = d, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_text(v: pd.DataFrame, usable_pts: float = USABLE_MEAN_PTS) -> str:
    """The verdict in words, one bullet per task model."""

    def ci(lo: float, hi: float) -> str:
        return f" (95% CI {lo:.1f} to {hi:.1f})" if np.isfinite(lo) and np.isfinite(hi) else ""

    lines = []
    for r in v.itertuples():
        if getattr(r, "small_n", False):
            lines.append(
                f"- **{r.task_model}**: n too small for a verdict: the held-out groups' accuracies rest on "
                f"as few as {_int(r.min_group_images)} images ({_int(r.n_groups)} groups of "
                f"{_int(r.n_corruptions)} corruptions; at least {SMALL_N_GROUP_IMAGES} images per group "
                f"and {SMALL_N_GROUPS} groups are needed), so no estimator is called usable and no "
                f"estimator is ranked above another. Mean absolute errors, for the record: best of "
                f"M's own outputs {r.best_own} {r.best_own_mae_pts:.1f} points, no-shift baseline "
                f"{r.baseline_mae_pts:.1f}.")
            continue
        text = (
            f"- **{r.task_model}**: usable (mean absolute error below {usable_pts:g} points "
            f"within its interval, and better than the no-shift baseline's "
            f"{r.baseline_mae_pts:.1f}): {r.usable}. Best of M's own outputs: {r.best_own}, "
            f"{r.best_own_mae_pts:.1f} points."
        )
        if r.best_task_agnostic != "-":
            gain = r.gain_over_baseline_pts
            text += (
                f" Best task-agnostic Q: {r.best_task_agnostic}, {r.best_task_agnostic_mae_pts:.1f} "
                f"points (95% CI {r.best_task_agnostic_ci}): {r.gap_pts:.1f} points worse than "
                f"M's own best{ci(r.gap_ci_low, r.gap_ci_high)}, and "
                f"{abs(gain):.1f} points {'better' if gain >= 0 else 'worse'} than the no-shift "
                f"baseline{ci(r.gain_ci_low, r.gain_ci_high)}"
            )
            no_gain = np.isfinite(r.gain_ci_low) and r.gain_ci_low <= 0
            text += (": no better than assuming no shift." if no_gain else ".")
        else:
            text += " No task-agnostic Q (no-reference IQA or zero-shot score) was given."
        lines.append(text)
    return "\n".join(lines)


def _int(value) -> str:
    return "?" if value is None or not np.isfinite(value) else f"{int(value)}"


def run_prior(
    scores_dir: str | Path,
    task_models: list[str] | None = None,
    scorers: list[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_classes: int = IMAGENET_CLASSES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the scores and return (LOCO table, summary): what ``iqa-kit prior`` writes."""
    from iqa_lib.analysis.io import load_scores, read_schema

    scores = load_scores(scores_dir, scorers)
    task_files = [s for s, k in scores.kinds.items() if k in ("classifier", "zero_shot")]
    if task_models:
        wanted = list(task_models)
    else:  # every labelled task file; an unlabelled one still serves as a Q for the Q-prior
        wanted = [s for s in task_files if s in scores.m]
        unlabelled = [str(Path(scores_dir) / f"{s}.parquet") for s in task_files if s not in scores.m]
        if unlabelled and wanted:
            warnings.warn(f"{', '.join(unlabelled)}: no 'correct' column (unlabelled images): "
                          "used as Q only, not validated as a task model", stacklevel=2)
        elif unlabelled:
            wanted = task_files  # all unlabelled: the loop below names the first
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
    check_loco_data(scores, str(scores_dir))
    predictions = {}
    for name in wanted:
        if "pred" in read_schema(Path(scores_dir) / f"{name}.parquet").names:
            predictions[name] = read_predictions(scores_dir, scores, name)
    table = leave_one_corruption_out(scores, list(wanted), predictions=predictions, n_classes=n_classes)
    return table, summarize(table, n_bootstrap, seed, level)
