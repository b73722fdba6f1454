"""Accuracy estimators: a prior on a task model's accuracy from quality, and the baselines it must beat.

Each estimator is fitted on labelled reference rows (clean images and known corruptions)
and predicts the top-1 accuracy of task model M on an unlabelled target set:

- ``q_prior`` (the paper's): fit P(M = 1 | Q) by logistic regression on the reference,
  predict the mean of P over the target's Q. Any Q works: a no-reference IQA score, another
  model's confidence, M's own q_p / q_h / q_l.
- ``q_line``: M's accuracy on each labelled reference group (clean, each known corruption
  and severity) against the group's mean Q, a least-squares line read at the target's mean
  Q, on probit axes for a Q in [0, 1] (:class:`QLine`). The Q-prior fits single images, where
  a Q that orders groups well may still separate right from wrong poorly, so its fitted curve is flat and pulls every set toward the
  reference accuracy; the line is fitted where the prediction is made, on sets (as the
  nuclear norm's and MaNo's lines, and Deng and Zheng's 2021 regression on set statistics).
- ``ac``: average confidence, the mean of M's max-softmax q_p on the target.
- ``doc`` (Guillory et al. 2021): reference accuracy minus (reference AC - target AC).
- ``atc_mc`` / ``atc_ne`` (Garg et al. 2022): a threshold on the score (q_p, or the
  negative entropy -q_h) chosen so that the share of reference scores above it equals the
  reference accuracy; the prediction is the share of target scores above it.
- ``cot_top1``: an approximation of COT (Lu et al. 2023) from pred and q_p only, for score
  files kept without logits; see :func:`cot_top1_error`. :func:`cot_exact_error` is the
  published COT for a full probability matrix as a scipy linear programme (small problems;
  the validation uses POT's exact solver, :mod:`.logit_estimators`).
- with the logits kept (:mod:`iqa_lib.scoring.logits`): exact ``cot``, ``mano``, ``nuclear``
  and agreement-on-the-line ``aline_s`` / ``aline_d``, in :mod:`.logit_estimators`.
- ``reference``: the reference accuracy itself, the no-shift baseline every estimator
  must beat to be worth anything.

Their validation (leave one corruption out, summary, verdict) is
:mod:`iqa_lib.analysis.prior.validation`; the verdict in words is
:mod:`iqa_lib.presentation.prior_report`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from iqa_lib import defaults
from iqa_lib.analysis.prior.logit_estimators import (
    LOGIT_LABELS,
    LOGIT_METHODS,
    PROBIT_CLIP,
    fit_score_line,
    probit,
)
from iqa_lib.stats.bootstrap import percentile_ci
from iqa_lib.stats.logistic import fit_logistic

# method -> short description for tables and figures
METHODS: dict[str, str] = {
    "q_prior": "Q-prior: mean of a logistic P(M=1|Q) fitted on the reference",
    "q_line": "Q-line: a line of accuracy on the mean Q over the reference's groups",
    "ac": "AC: mean max-softmax confidence q_p",
    "doc": "DoC: reference accuracy - (reference AC - target AC)",
    "atc_mc": "ATC with max confidence q_p",
    "atc_ne": "ATC with negative entropy -q_h",
    "cot_top1": "COT approximation from pred and q_p (not the published COT)",
    **LOGIT_METHODS,
    "reference": "reference accuracy (no-shift baseline)",
}
OWN_METHODS = ("ac", "doc", "atc_mc", "atc_ne", "cot_top1")
IMAGENET_CLASSES = 1000


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
    fit = fit_logistic(q, correct)
    if not fit.fitted:
        return QPrior(float("nan"), 0.0, fit.status, float(np.mean(correct)))
    return QPrior(fit.intercept, fit.slope, fit.status)


@dataclass(frozen=True)
class QLine:
    """M's accuracy against the mean Q over labelled groups, read at a set's mean Q.

    ``scale`` "probit": Phi^-1(accuracy) = intercept + slope * Phi^-1(mean Q), for a Q in
    [0, 1] (a confidence, learned_q). Accuracy bends against mean confidence near the top, so
    a straight line fitted mostly on corrupted groups passes several points above the clean
    group (+4.4 to +8.3 points for the EfficientNet-Lite models, +0.3 to +1.0 on probit axes:
    ``benchmarks/q_line_clean_bias.py``); the probit axes are agreement-on-the-line's and keep
    the reading inside (0, 1). "linear": accuracy = intercept + slope * mean Q, clipped to
    [0, 1], for a score without a natural scale (an entropy, BRISQUE).
    """

    intercept: float
    slope: float
    groups: int
    scale: str

    def predict(self, mean_q) -> np.ndarray:
        """Accuracy at each set's mean Q."""
        x = np.asarray(mean_q, dtype=np.float64)
        if self.scale == "probit":
            return norm.cdf(self.intercept + self.slope * probit(x))
        return np.clip(self.intercept + self.slope * x, 0.0, 1.0)

    def contributions(self, q) -> np.ndarray:
        """Each image's share of the set's reading: values whose mean is ``predict(mean(q))``.

        Straight: the line at each image's Q. Probit: the curve's tangent at the set's mean Q
        (the delta method), so a bootstrap over the images and the residual variance of the
        audit's interval see the curve's local slope. A tangent is taken per set: the shares of
        one set do not average to another set's reading.
        """
        q = np.asarray(q, dtype=np.float64)
        if self.scale != "probit":
            return self.intercept + self.slope * q
        if not q.size:
            return q
        mean = float(q.mean())
        z = float(probit(mean))
        inside = PROBIT_CLIP < mean < 1 - PROBIT_CLIP  # the clipped probit is flat outside
        slope = self.slope * norm.pdf(self.intercept + self.slope * z) / norm.pdf(z) if inside else 0.0
        return float(norm.cdf(self.intercept + self.slope * z)) + slope * (q - mean)


Q_LINE_SCALES = ("probit", "linear")


def q_line_scale(q) -> str:
    """"probit" for a Q whose every value lies in [0, 1], "linear" otherwise."""
    q = np.asarray(q, dtype=np.float64)
    return "probit" if q.size and float(np.nanmin(q)) >= 0.0 and float(np.nanmax(q)) <= 1.0 else "linear"


def fit_q_line(q, correct, groups, scale: str | None = None) -> QLine:
    """Fit the Q-line: M's accuracy on each group of the reference rows against the group's mean
    Q, least squares with one unweighted point per group, on probit axes for a Q in [0, 1] and
    straight otherwise (``scale`` forces one; :class:`QLine`). ``groups``: each row's group as
    any integer label (e.g. the codes of :func:`iqa_lib.analysis.groupwise.group_codes`),
    computed once for every Q fitted."""
    scale = q_line_scale(q) if scale is None else scale
    if scale not in Q_LINE_SCALES:
        raise ValueError(f"Q-line scale must be one of {Q_LINE_SCALES}, got {scale!r}")
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    n = np.bincount(inv).astype(np.float64)
    x, y = group_mean(np.asarray(q), inv, n), group_mean(np.asarray(correct), inv, n)
    if scale == "probit":
        x, y = probit(x), probit(y)
    line = fit_score_line(x, y)
    return QLine(line.intercept, line.slope, line.groups, scale)


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
    it against POT's ``ot.emd2``. Classes without reference mass are dropped first. Slow
    beyond toy sizes (250 s for 500 images x 1000 classes, where ``ot.emd2`` takes 2-6 s):
    the validation and the audit use :func:`.logit_estimators.cot_error`.
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


@dataclass(frozen=True)
class OwnFit:
    """The own-output estimators fitted on M's labelled reference outputs (:func:`fit_own`)."""

    accuracy: float
    average_confidence: float
    atc_mc: AtcThreshold
    atc_ne: AtcThreshold | None
    q_line: QLine | None

    def contributions(self, target: dict) -> dict[str, np.ndarray]:
        """Per image of one target set, its share of each estimate (the estimate: the mean,
        clipped to [0, 1] by :func:`clip_accuracy`). ``target``: ``q_p`` (and ``q_h``) of the
        set's images. AC: q_p; DoC: q_p shifted by reference accuracy minus reference AC;
        ATC-MC / ATC-NE: the tie-weighted indicator of the threshold; the Q-line: its
        :meth:`QLine.contributions` (a tangent at this set's mean: call once per set)."""
        t_qp = np.asarray(target["q_p"], dtype=np.float64)
        out = {"ac": t_qp, "doc": self.accuracy - self.average_confidence + t_qp,
               "atc_mc": self.atc_mc.contributions(t_qp)}
        if self.atc_ne is not None and target.get("q_h") is not None:
            out["atc_ne"] = self.atc_ne.contributions(-np.asarray(target["q_h"], dtype=np.float64))
        if self.q_line is not None:
            out["q_line"] = self.q_line.contributions(t_qp)
        return out


def fit_own(reference: dict) -> OwnFit:
    """Fit AC, DoC, ATC-MC, ATC-NE (with ``q_h``) and, when the reference has each row's
    ``group`` (an integer label of its corruption and severity), the Q-line on q_p
    (:func:`fit_q_line`) on M's labelled outputs (``q_p``, ``correct``, aligned). The one
    place these fits live: the validation and the audit use it."""
    r_qp = np.asarray(reference["q_p"], dtype=np.float64)
    r_m = np.asarray(reference["correct"]).astype(np.int8)
    if r_qp.size != r_m.size or not r_qp.size:
        raise ValueError("need aligned, non-empty reference q_p/correct")
    atc_ne = None
    if reference.get("q_h") is not None:
        atc_ne = fit_atc(-np.asarray(reference["q_h"], dtype=np.float64), r_m)
    q_line = fit_q_line(r_qp, r_m, reference["group"]) if reference.get("group") is not None else None
    return OwnFit(float(r_m.mean()), average_confidence(r_qp), fit_atc(r_qp, r_m), atc_ne, q_line)


def own_contributions(reference: dict, target: dict) -> dict[str, np.ndarray]:
    """Per image of one target set, its share of each own-output estimate, the fits made on
    ``reference`` (:func:`fit_own`, :meth:`OwnFit.contributions`)."""
    return fit_own(reference).contributions(target)


def clip_accuracy(values):
    """An estimate (or estimates) as an accuracy: within [0, 1]. DoC and the Q-line are
    affine in a mean and can leave the range; the others cannot."""
    return np.clip(values, 0.0, 1.0)


def estimate_accuracy(
    reference: dict[str, np.ndarray],
    target: dict[str, np.ndarray],
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
) -> pd.DataFrame:
    """M's accuracy on unlabelled ``target`` images by AC, DoC, ATC-MC, ATC-NE (and the Q-line on
    q_p when the reference has its groups; :func:`own_contributions`).

    The interval is a percentile bootstrap over the target images with the reference fit
    held fixed: how much the estimate moves with another sample of images like these. The
    error under shift that :func:`leave_one_corruption_out` measures comes on top, so an
    audit shows both. What ``iqa-kit audit`` reports. (The Q-line's shares are its tangent at
    the set's mean q_p, so its bootstrap is the delta method's.)
    """
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
        lo, hi = percentile_ci(clip_accuracy(boot[method]), level)
        rows.append({"method": method, "predicted": float(clip_accuracy(values.mean())), "ci_low": lo, "ci_high": hi,
                     "n_target": int(n), "n_reference": int(r_m.size),
                     "reference_accuracy": float(r_m.mean())})
    return pd.DataFrame(rows)


def own_group_predictions(reference: dict, target: dict, inv: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """Each own-output estimate per target group (``inv``: each target row's group code)."""
    counts = np.bincount(inv, minlength=n_groups).astype(np.float64)
    return {k: clip_accuracy(group_mean(v, inv, counts)) for k, v in own_contributions(reference, target).items()}


def group_mean(values: np.ndarray, codes: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.bincount(codes, weights=values.astype(np.float64), minlength=n.size) / n


def label(row) -> str:
    """A short name for a summary row: method and, for the Q-prior, its Q."""
    if row["method"] in ("q_prior", "q_line"):
        name = "Q-prior" if row["method"] == "q_prior" else "Q-line"
        return f"{name}({row['scorer']} {row['q']})" if row["q"] != "q" else f"{name}({row['scorer']})"
    return {"ac": "AC", "doc": "DoC", "atc_mc": "ATC-MC", "atc_ne": "ATC-NE",
            "cot_top1": "COT-top1 (approx.)", "reference": "reference accuracy",
            **LOGIT_LABELS}.get(row["method"], row["method"])

