"""Accuracy estimators that need each image's full logits (the logits contract of
:mod:`iqa_lib.scoring.logits`), beside AC/DoC/ATC of :mod:`.estimators`:

- ``cot`` (Lu et al., NeurIPS 2023, official code github.com/luyuzhe111/COT): the optimal-
  transport cost between the target's softmax vectors (mass 1/n each) and the reference's
  label marginal, cost ||p - e_k||_1 / 2 = 1 - p_k, is the predicted error. Solved exactly
  with POT's network simplex (``ot.emd``), as the authors do, on the softmax after temperature
  scaling fitted on labelled in-distribution rows (the authors' calibration); see
  :func:`cot_error` and :func:`fit_temperature`.
- ``mano`` (Xie et al., NeurIPS 2024, official code github.com/Renchunzi-Xie/MaNo): the
  scaled entrywise p-norm (p = 4) of the normalised prediction matrix,
  ``(sum |P_ik|^p / (N K))^(1/p)``, each row normalised by softmax or, when the criterion
  Phi = mean_i -(1/K) sum_k log softmax(z_i)_k is at most 5 (a poorly calibrated model),
  by the second-order Taylor map ``v = 1 + z + z^2/2``, shifted to its row minimum and
  L1-normalised; see :func:`mano_rows`.
- ``nuclear`` (Deng et al., ICML 2023, "Confidence and Dispersity Speak"): the nuclear norm
  of the softmax matrix divided by its upper bound sqrt(N min(N, K)); see
  :func:`nuclear_norm_score`.
- ``aline_s`` / ``aline_d`` (Baek et al., NeurIPS 2022, agreement-on-the-line): from three or
  more task models, probit-transformed agreement between model pairs in distribution (the
  clean reference) and on the target gives the line's slope and bias, which carries each
  model's in-distribution accuracy to the target (ALine-S), or a least-squares system over
  pairs solves for all target accuracies at once (ALine-D); see :func:`aline`.

MaNo and the nuclear norm give a score, not an accuracy: as both papers do, a linear
regression of accuracy on the score over labelled shifted sets maps it to accuracy, here
fitted on the reference's (corruption, severity) groups and clean (:func:`fit_score_line`).
Logits are float16 memory maps of up to millions of rows: every statistic is computed in
chunks of :data:`CHUNK` rows converted to float64 one chunk at a time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from scipy.stats import norm

CHUNK = 4096
MANO_P = 4  # the official code's --norm_type default and every run in its bash/mano.sh
MANO_ETA = 5.0  # the official criterion: softmax when Phi > 5, else the Taylor map
COT_BATCH = 5000  # larger groups: COT averaged over random batches, as the authors do above 10000
PROBIT_CLIP = 1e-4  # accuracies/agreements of exactly 0 or 1 have no probit
POT_MISSING = ("exact COT needs POT (the Python Optimal Transport package): pip install POT; "
               "without it the 'cot' estimator is left out")

LOGIT_METHODS: dict[str, str] = {
    "cot": "COT: optimal-transport cost from softmax vectors to the reference label marginal (Lu et al. 2023)",
    "mano": "MaNo: scaled 4-norm of the normalised logits, linear fit to accuracy on the reference (Xie et al. 2024)",
    "nuclear": "nuclear norm of the softmax matrix, linear fit to accuracy on the reference (Deng et al. 2023)",
    "aline_s": "ALine-S: agreement-on-the-line slope and bias from model pairs (Baek et al. 2022)",
    "aline_d": "ALine-D: agreement-on-the-line, least squares over model pairs (Baek et al. 2022)",
}
LOGIT_LABELS = {"cot": "COT", "mano": "MaNo", "nuclear": "nuclear norm", "aline_s": "ALine-S", "aline_d": "ALine-D"}


def chunks(logits: np.ndarray, rows: np.ndarray | None = None, size: int = CHUNK):
    """float64 blocks of ``logits`` (its ``rows``, in order), ``size`` rows at a time."""
    idx = np.arange(logits.shape[0]) if rows is None else np.asarray(rows)
    for start in range(0, idx.size, size):
        yield np.asarray(logits[idx[start:start + size]], dtype=np.float64)


# --------------------------------------------------------------------------- MaNo


def mano_criterion(z: np.ndarray) -> np.ndarray:
    """Per row, MaNo's calibration criterion: -(1/K) sum_k log softmax(z)_k (cross-entropy to uniform)."""
    return -log_softmax(z, axis=1).mean(axis=1)


def mano_rows(z: np.ndarray, use_softmax: bool) -> np.ndarray:
    """MaNo's normalisation sigma of logit rows: softmax, or the Taylor map 1 + z + z^2/2
    shifted by its row minimum and divided by its L1 norm (floor 1e-12, torch's normalize)."""
    if use_softmax:
        return softmax(z, axis=1)
    v = 1.0 + z + z * z / 2.0
    v = v - v.min(axis=1, keepdims=True)
    return v / np.maximum(np.abs(v).sum(axis=1, keepdims=True), 1e-12)


def mano_score(power_sum: float, n: int, k: int, p: int = MANO_P) -> float:
    """(sum_ik |P_ik|^p / (n k))^(1/p) from the summed p-th powers."""
    return float((power_sum / (n * k)) ** (1.0 / p)) if n else math.nan


def pooled_mano_score(scores: np.ndarray, n: np.ndarray, p: int = MANO_P) -> float:
    """MaNo's score of groups taken together, from each group's score and row count: the
    score is (mean over rows of sum_k sigma_k^p / K)^(1/p), so the pool's is the groups'
    p-th powers averaged with their row counts as weights."""
    scores, n = np.asarray(scores, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return float(((scores ** p * n).sum() / n.sum()) ** (1.0 / p))


# --------------------------------------------------------------------------- nuclear norm

# a nuclear norm taken at a smaller set's size: random subsets of each larger group, averaged
SIZE_MATCH_DRAWS = 5
SIZE_MATCH_SEED = 0


def nuclear_norm_score(blocks, k: int) -> float:
    """||P||_* / sqrt(N min(N, K)) of the softmax matrix P stacked from logit ``blocks``.

    A tall-skinny QR keeps only a K x K triangle (P = QR has R's singular values), so the
    norm of millions of rows needs K^2 memory, and it is as accurate as an SVD of P.
    """
    r = np.zeros((0, k))
    n = 0
    for z in blocks:
        n += z.shape[0]
        r = np.linalg.qr(np.vstack([r, softmax(z, axis=1)]), mode="r")
    if n == 0:
        return math.nan
    return float(np.linalg.svd(r, compute_uv=False).sum() / math.sqrt(n * min(n, k)))


# --------------------------------------------------------------------------- COT


def _pot():
    """POT without its torch/jax/tf/cupy backends (it would import torch, seconds, to solve
    a numpy problem); ImportError when POT is not installed."""
    for backend in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{backend}", "1")
    import ot  # optional dependency: only exact COT needs it

    return ot


def pot_available() -> bool:
    """Whether POT (``import ot``) is installed; exact COT needs it."""
    try:
        _pot()
    except ImportError:
        return False
    return True


def _cot_problem(probs: np.ndarray, marginal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source weights, sink weights, cost) of COT, classes without reference mass dropped."""
    p = np.asarray(probs, dtype=np.float64)
    b = np.asarray(marginal, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != b.size:
        raise ValueError(f"probs must be (n, {b.size}) for a marginal over {b.size} classes")
    keep = b > 0
    return np.full(p.shape[0], 1.0 / p.shape[0]), b[keep] / b[keep].sum(), np.ascontiguousarray(1.0 - p[:, keep])


def cot_costs(probs: np.ndarray, marginal: np.ndarray) -> np.ndarray:
    """Each row's transport cost in COT's optimal plan (n times its share of the total): their
    mean is COT's predicted error, and 1 - cost is the row's share of the accuracy (the
    official code's per-sample costs, used for the audit's bootstrap with the plan held fixed).

    The exact optimal-transport cost from the rows of ``probs`` (mass 1/n each) to
    ``marginal`` over classes, cost 1 - p_ik (= ||p_i - e_k||_1 / 2, the authors' cost),
    solved with POT's network simplex (``ot.emd``): ~2-6 s for 500 x 1000 and ~1.5 min for
    5000 x 1000 on one busy core.
    """
    ot = _pot()
    if np.asarray(probs).shape[0] == 0:
        return np.zeros(0)
    a, b, cost = _cot_problem(probs, marginal)
    plan, log = ot.emd(a, b, cost, numItermax=10**8, log=True)
    if log.get("warning"):
        raise RuntimeError(f"COT transport did not reach its optimum: {log['warning']}")
    return (plan * cost).sum(axis=1) * a.size


def cot_error(probs: np.ndarray, marginal: np.ndarray) -> float:
    """COT's predicted error (Lu et al. 2023): the mean of :func:`cot_costs`."""
    costs = cot_costs(probs, marginal)
    return float(costs.mean()) if costs.size else math.nan


def fit_temperature(logits: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T minimising the negative log-likelihood of
    softmax(z / T) at the labels of ``rows``, as COT's authors calibrate the model on
    in-distribution validation data before transporting. Bounded to [0.05, 20]."""
    order = np.argsort(rows)
    rows, labels = np.asarray(rows)[order], np.asarray(labels)[order]

    def nll(log_t: float) -> float:
        total, start = 0.0, 0
        for z in chunks(logits, rows):
            lab = labels[start:start + z.shape[0]]
            total -= float(log_softmax(z / math.exp(log_t), axis=1)[np.arange(lab.size), lab].sum())
            start += z.shape[0]
        return total

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


def cot_accuracy(
    logits: np.ndarray, rows: np.ndarray, marginal: np.ndarray, seed: int = 0, temperature: float = 1.0
) -> float:
    """1 - COT error of ``rows`` of ``logits`` (softmax at ``temperature``); above
    :data:`COT_BATCH` rows the mean over a random partition into batches of at most that size
    (the authors batch above 10,000)."""
    rows = np.asarray(rows)
    n_batches = max(1, math.ceil(rows.size / COT_BATCH))
    parts = np.array_split(np.random.default_rng(seed).permutation(rows), n_batches) if n_batches > 1 else [rows]
    errors = [cot_error(np.vstack([softmax(z / temperature, axis=1) for z in chunks(logits, np.sort(part))]),
                        marginal) for part in parts]
    return float(1.0 - np.average(errors, weights=[part.size for part in parts]))


# --------------------------------------------------------------------------- per-group statistics


@dataclass(frozen=True)
class GroupStats:
    """Per group of rows (a corruption and severity, or clean): what MaNo and the nuclear
    norm need, from one chunked pass over the logits. Sums, so that any union of groups'
    criterion is a weighted mean."""

    n: np.ndarray  # rows per group
    criterion_sum: np.ndarray  # sum over rows of MaNo's criterion
    mano_softmax: np.ndarray  # MaNo score with softmax rows
    mano_taylor: np.ndarray  # MaNo score with Taylor rows
    nuclear: np.ndarray  # normalised nuclear norm

    def mano(self, reference: np.ndarray) -> tuple[np.ndarray, bool]:
        """MaNo scores of every group, normalised as the criterion on the ``reference`` groups
        (mask) decides (one choice for fit and target, as the official code fixes it once)."""
        use_softmax = bool(self.criterion_sum[reference].sum() / self.n[reference].sum() > MANO_ETA)
        return (self.mano_softmax if use_softmax else self.mano_taylor), use_softmax

    def line_fit(self, accuracy: np.ndarray, reference: np.ndarray) -> LineFit:
        """MaNo's and the nuclear norm's lines of accuracy on score over the ``reference`` groups
        (mask), MaNo normalised as the criterion on those groups decides."""
        mano, use_softmax = self.mano(reference)
        scores = {"mano": mano, "nuclear": self.nuclear}
        lines = {k: fit_score_line(v[reference], accuracy[reference]) for k, v in scores.items()}
        return LineFit(scores, lines, use_softmax)


def size_matched_nuclear(logits: np.ndarray, members: list[np.ndarray], size: int,
                         whole: np.ndarray) -> np.ndarray:
    """Each group's nuclear-norm score averaged over :data:`SIZE_MATCH_DRAWS` random subsets of
    ``size`` of its rows (seeded); a group no larger than ``size`` keeps its ``whole`` score.

    The normalised norm rises as fewer images share fewer classes, so a line fitted on large
    groups over-predicts a small set (by ~2.4 points for 100 images against groups of ~500):
    a fit meant for sets of ``size`` images takes its groups' scores at that size."""
    rng = np.random.default_rng(SIZE_MATCH_SEED)
    k = logits.shape[1]
    out = np.asarray(whole, dtype=np.float64).copy()
    for g, rows in enumerate(members):
        if rows.size > size:
            draws = [np.sort(rng.choice(rows, size=size, replace=False)) for _ in range(SIZE_MATCH_DRAWS)]
            out[g] = float(np.mean([nuclear_norm_score(chunks(logits, d), k) for d in draws]))
    return out


def size_blocks(rows: np.ndarray, size: int | None) -> list[np.ndarray]:
    """``rows`` as one set or, above ``size`` rows, as subsets of that size: the disjoint
    blocks of a random partition when there are two or more (every row counts once, a
    remainder smaller than a block left out), else :data:`SIZE_MATCH_DRAWS` random subsets;
    seeded, each block sorted."""
    rows = np.asarray(rows)
    if size is None or rows.size <= size:
        return [rows]
    rng = np.random.default_rng(SIZE_MATCH_SEED)
    if rows.size >= 2 * size:
        order = rng.permutation(rows)
        return [np.sort(order[i * size:(i + 1) * size]) for i in range(rows.size // size)]
    return [np.sort(rng.choice(rows, size=size, replace=False)) for _ in range(SIZE_MATCH_DRAWS)]


def block_nuclear_scores(logits: np.ndarray, rows: np.ndarray, size: int | None) -> np.ndarray:
    """The nuclear-norm score of each of :func:`size_blocks`' subsets of ``rows``: how a set
    larger than the groups a line was fitted on is scored (its own norm would sit below
    theirs for its size alone: more images share more classes)."""
    return np.asarray([nuclear_norm_score(chunks(logits, b), logits.shape[1]) for b in size_blocks(rows, size)])


def group_stats(logits: np.ndarray, groups: list[np.ndarray]) -> GroupStats:
    """:class:`GroupStats` of each row set in ``groups`` (row indices into ``logits``)."""
    k = logits.shape[1]
    out = {name: np.zeros(len(groups)) for name in ("n", "criterion_sum", "mano_softmax", "mano_taylor", "nuclear")}
    for g, rows in enumerate(groups):
        rows = np.sort(np.asarray(rows))
        pow_soft = pow_taylor = 0.0
        for z in chunks(logits, rows):
            out["criterion_sum"][g] += mano_criterion(z).sum()
            pow_soft += float((mano_rows(z, True) ** MANO_P).sum())
            pow_taylor += float((mano_rows(z, False) ** MANO_P).sum())
        out["n"][g] = rows.size
        out["mano_softmax"][g] = mano_score(pow_soft, rows.size, k)
        out["mano_taylor"][g] = mano_score(pow_taylor, rows.size, k)
        out["nuclear"][g] = nuclear_norm_score(chunks(logits, rows), k)
    return GroupStats(**out)


@dataclass(frozen=True)
class LineFit:
    """Every group's MaNo and nuclear-norm score with the lines fitted on some of the groups."""

    scores: dict[str, np.ndarray]  # method -> score of every group
    lines: dict[str, ScoreLine]  # method -> accuracy line fitted on the reference groups
    mano_softmax: bool  # MaNo's normalisation: softmax (True) or Taylor rows

    def predict(self, groups) -> dict[str, np.ndarray]:
        """Each method's accuracy for the groups at positions ``groups``."""
        return {k: self.lines[k].predict(self.scores[k][groups]) for k in self.lines}


@dataclass(frozen=True)
class ScoreLine:
    """accuracy = intercept + slope * score, fitted over labelled groups; clipped to [0, 1]."""

    intercept: float
    slope: float
    groups: int

    def predict(self, score) -> np.ndarray:
        return np.clip(self.intercept + self.slope * np.asarray(score, dtype=np.float64), 0.0, 1.0)


def fit_score_line(scores, accuracies) -> ScoreLine:
    """Ordinary least squares of accuracy on a set-level score over labelled groups (each
    group one point, as MaNo's and the nuclear norm's papers fit their regressions)."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(accuracies, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        return ScoreLine(float(np.mean(y)) if y.size else math.nan, 0.0, int(x.size))
    slope, intercept = np.polyfit(x, y, 1)
    return ScoreLine(float(intercept), float(slope), int(x.size))


# --------------------------------------------------------------------------- agreement on the line


def probit(x) -> np.ndarray:
    """Phi^-1 of ``x`` clipped to [:data:`PROBIT_CLIP`, 1 - :data:`PROBIT_CLIP`]."""
    return norm.ppf(np.clip(np.asarray(x, dtype=np.float64), PROBIT_CLIP, 1 - PROBIT_CLIP))


def agreement(preds: np.ndarray) -> np.ndarray:
    """(models x models) share of rows on which two models' predictions agree; ``preds`` is
    (models, rows)."""
    p = np.asarray(preds)
    return np.asarray([[float(np.mean(a == b)) for b in p] for a in p])


def aline(acc_id, agr_id: np.ndarray, agr_ood: np.ndarray) -> dict[str, np.ndarray]:
    """Baek et al.'s ALine-S and ALine-D target accuracies of m >= 3 models.

    ``acc_id``: in-distribution accuracies (m); ``agr_id``/``agr_ood``: (m x m) agreement
    in distribution and on the target. The line Phi^-1(agr_ood) = a Phi^-1(agr_id) + b is
    fitted over the pairs; ALine-S maps each Phi^-1(acc_id) through it; ALine-D solves, in
    least squares over pairs (i, j), (x_i + x_j) / 2 = Phi^-1(agr_ood_ij) + a ((Phi^-1(acc_id_i)
    + Phi^-1(acc_id_j)) / 2 - Phi^-1(agr_id_ij)) for the target probit accuracies x.
    """
    acc = probit(acc_id)
    m = acc.size
    if m < 3:
        raise ValueError(f"agreement-on-the-line needs at least 3 task models (pairs to fit a line), got {m}")
    i, j = np.triu_indices(m, k=1)
    x_id, x_ood = probit(agr_id[i, j]), probit(agr_ood[i, j])
    a, b = np.polyfit(x_id, x_ood, 1)
    design = np.zeros((i.size, m))
    design[np.arange(i.size), i] = design[np.arange(i.size), j] = 0.5
    rhs = x_ood + a * ((acc[i] + acc[j]) / 2 - x_id)
    solved = np.linalg.lstsq(design, rhs, rcond=None)[0]
    return {"aline_s": norm.cdf(a * acc + b), "aline_d": norm.cdf(solved)}
