"""Logistic regression P(M | Q) with one feature, its AUC and cross-entropy, batched.

The model is unpenalised maximum likelihood with an intercept (what statsmodels ``Logit``
and scikit-learn ``LogisticRegression(penalty=None)`` fit). Q is standardised before the
Newton iterations; coefficients are reported on Q's own scale. Thousands of small fits
(one per label, per image ID, per fold) run in one compiled pass over rows grouped
contiguously, not in a Python loop.

Edge cases, each flagged by a status code (``STATUS_NAMES``) and counted by the analyses:

- M constant in the training data: no fit (``constant_m``).
- Q constant in the training data: intercept-only fit, slope 0, AUC 0.5 (``constant_q``).
- Perfect or quasi-separation (a threshold on Q splits M exactly): the MLE is infinite.
  These fits get an L2 penalty ``ridge / 2 * b_std**2`` on the standardised slope
  (default ``ridge=1e-3``), which keeps the slope's sign (so the AUC) and gives finite
  probabilities for the cross-entropy (``separable``).
- No convergence within ``max_iter`` Newton steps (``not_converged``; not seen in practice).

AUC of the fitted model: its probability is monotone in Q, so the AUC is the raw-score AUC
when the slope is positive and 1 - that AUC when it is negative (below 0.5 when the sign
learnt on the training data is wrong on the test data). Both are returned.

Cross-entropy is scikit-learn's ``log_loss`` (natural log, probabilities clipped to
[eps, 1 - eps] with eps the float64 machine epsilon), computed stably from the linear
predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iqa_lib.stats import _kernels as K
from iqa_lib.stats.checks import as_binary, as_float, same_length

STATUS_NAMES = {
    K.OK: "ok",
    K.SEPARABLE: "separable",
    K.CONSTANT_M: "constant_m",
    K.CONSTANT_Q: "constant_q",
    K.NOT_CONVERGED: "not_converged",
    K.EMPTY: "empty",
}
MAX_ITER = 100
TOL = 1e-8
RIDGE = 1e-3


@dataclass(frozen=True)
class LogitFit:
    """P(M = 1 | Q) = sigmoid(intercept + slope * Q)."""

    intercept: float
    slope: float
    status: str
    n_iter: int

    @property
    def fitted(self) -> bool:
        return self.status not in ("constant_m", "empty")

    def decision(self, q) -> np.ndarray:
        """Linear predictor intercept + slope * q."""
        return self.intercept + self.slope * np.asarray(q, dtype=np.float64)

    def predict_proba(self, q) -> np.ndarray:
        """P(M = 1 | q)."""
        from scipy.special import expit

        return expit(self.decision(q))


def _inputs(q, m, q_name: str = "q", m_name: str = "m") -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(as_float(q, q_name))
    y = np.ascontiguousarray(as_binary(m, m_name))
    same_length(**{q_name: x, m_name: y})
    return x, y


def fit_logistic(
    q, m, *, max_iter: int = MAX_ITER, tol: float = TOL, ridge: float = RIDGE
) -> LogitFit:
    """Fit P(M | Q) on all rows given; see the module docstring for edge cases."""
    x, y = _inputs(q, m)
    a, b, status, n_iter = K.fit_one(x, y, max_iter, tol, ridge, np.nan, np.nan)
    return LogitFit(float(a), float(b), STATUS_NAMES[int(status)], int(n_iter))


def auc_score(score, m) -> float:
    """ROC AUC of ``score`` for binary ``m`` (ties count 1/2; equals sklearn's roc_auc_score).

    Raises ValueError when ``m`` has only one class, like scikit-learn.
    """
    x, y = _inputs(score, m, "score", "m")
    if y.size == 0 or y.min() == y.max():
        raise ValueError("AUC is undefined when M has only one class")
    return float(K.auc_raw(x, y))


def cross_entropy(m, decision) -> float:
    """Mean log-loss of P = sigmoid(decision) for ``m`` (sklearn log_loss, natural log)."""
    eta = as_float(decision, "decision")
    y = as_binary(m, "m")
    same_length(m=y, decision=eta)
    loss = np.logaddexp(0.0, eta) - y * eta
    return float(np.minimum(loss, K.LOSS_CAP).mean())


def evaluate(fit: LogitFit, q, m) -> tuple[float, float, float]:
    """(fitted AUC, raw AUC, cross-entropy) of ``fit`` on held-out rows (NaN AUC if M constant)."""
    x, y = _inputs(q, m)
    return tuple(float(v) for v in K.eval_fit(x, y, fit.intercept, fit.slope))


def group_starts(groups, n_groups: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): a stable sort of rows by group code and the CSR row offsets."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.dtype.kind not in "iu":
        raise ValueError("groups must be a 1-D array of integer codes")
    if g.size and g.min() < 0:
        raise ValueError("group codes must be >= 0")
    n_groups = int(g.max()) + 1 if n_groups is None and g.size else int(n_groups or 0)
    order = np.argsort(g, kind="stable")
    counts = np.bincount(g, minlength=n_groups)
    starts = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return order, starts


def fit_logistic_groups(
    q,
    m,
    groups,
    n_groups: int | None = None,
    *,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    ridge: float = RIDGE,
) -> dict[str, np.ndarray]:
    """One logistic fit per group code; arrays ``intercept, slope, status, n_iter``."""
    x, y = _inputs(q, m)
    same_length(q=x, groups=np.asarray(groups))
    order, starts = group_starts(groups, n_groups)
    a, b, st, it = K.fit_groups(x[order], y[order], starts, max_iter, tol, ridge)
    return {"intercept": a, "slope": b, "status": st, "n_iter": it}


def grouped_auc(score, m, groups, n_groups: int | None = None) -> np.ndarray:
    """Raw-score AUC within every group code (NaN where the group's M is constant or empty)."""
    x, y = _inputs(score, m, "score", "m")
    same_length(score=x, groups=np.asarray(groups))
    order, starts = group_starts(groups, n_groups)
    return K.auc_groups(x[order], y[order], starts)


def group_score_order(q, presorted: tuple[np.ndarray, np.ndarray], parallel: bool = True) -> np.ndarray:
    """Row order that groups the rows as ``presorted`` (``group_starts`` output) does and
    sorts each group by ``q``: what :func:`cv_groups` needs, computed once per score column
    and reusable for every label column (``score_order=``)."""
    x = np.ascontiguousarray(as_float(q, "q"))
    order, starts = presorted
    kernel = K.argsort_groups if parallel else K.argsort_groups_serial
    return order[kernel(x[order], starts)]


def cv_groups(
    q,
    m,
    groups,
    folds,
    n_folds: int,
    n_groups: int | None = None,
    *,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    ridge: float = RIDGE,
    presorted: tuple[np.ndarray, np.ndarray] | None = None,
    parallel: bool = True,
    score_order: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """K-fold cross-validated fits inside every group (fold ids 0..n_folds-1 per row).

    Returns (n_groups, n_folds) arrays ``auc`` (fitted model), ``auc_raw``, ``ce``,
    ``status`` (of the training fit; ``empty`` when the fold has no test or no training
    rows), ``slope`` and ``n_test``. ``presorted`` may pass ``group_starts`` output to
    reuse one sort for many score columns, ``score_order`` :func:`group_score_order` output (for
    this ``q`` and ``presorted``) to reuse the sort by score for many label columns.
    ``parallel=False`` runs the groups on the calling thread without holding the GIL (the
    same numbers, bit for bit): for callers that run several calls at once from a thread
    pool.
    """
    x, y = _inputs(q, m)
    f = np.asarray(folds)
    same_length(q=x, groups=np.asarray(groups), folds=f)
    if f.size and (f.min() < 0 or f.max() >= n_folds):
        raise ValueError(f"fold ids must be in 0..{n_folds - 1}")
    presorted = presorted if presorted is not None else group_starts(groups, n_groups)
    if score_order is None:
        score_order = group_score_order(x, presorted, parallel)
    o = score_order
    kernel = K.cv_groups if parallel else K.cv_groups_serial
    auc, aucr, ce, st, slope, nt = kernel(
        x[o], y[o], f[o].astype(np.int16), presorted[1], n_folds, max_iter, tol, ridge
    )
    return {"auc": auc, "auc_raw": aucr, "ce": ce, "status": st, "slope": slope, "n_test": nt}


def sorted_blocks(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, block_starts): rows sorted by score and the offsets of runs of equal scores."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    change = np.flatnonzero(s[1:] != s[:-1]) + 1
    return order, np.concatenate(([0], change, [s.size])).astype(np.int64)


def weights_for_kernel(weights: np.ndarray) -> np.ndarray:
    """(B, n_clusters) counts as the kernel's (n_clusters, B) layout, uint8 when they fit."""
    w = np.asarray(weights)
    if w.size and (w.min() < 0 or np.any(w != np.round(w))):
        raise ValueError("bootstrap weights must be non-negative integer counts")
    dtype = np.uint8 if (w.size == 0 or w.max() <= 255) else np.float64
    return np.ascontiguousarray(w.T, dtype=dtype)


def bootstrap_auc(score, m, cluster, weights: np.ndarray) -> np.ndarray:
    """Raw-score AUC for every resample of clusters given as (B, n_clusters) count weights.

    ``cluster`` gives each row's cluster code (e.g. image ID). A row of ones gives the
    ordinary AUC. NaN for a resample with only one class.
    """
    x, y = _inputs(score, m, "score", "m")
    c = np.asarray(cluster)
    same_length(score=x, cluster=c)
    order, blocks = sorted_blocks(x)
    wt = weights_for_kernel(weights)
    if c.size and c.max() >= wt.shape[0]:
        raise ValueError(f"cluster code {int(c.max())} >= number of weight columns {wt.shape[0]}")
    return K.bootstrap_auc_sorted(y[order], c[order].astype(np.int64), blocks, wt)
