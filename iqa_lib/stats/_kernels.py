"""Compiled inner loops: one-feature logistic regression by Newton's method, AUC, CV.

Kept apart from the public wrappers so the numeric core is small and readable. All
loops are over plain float64/int arrays; groups are contiguous row ranges
(``starts[g]:starts[g + 1]``) of arrays sorted by group.
"""

from __future__ import annotations

import math

import numpy as np

from iqa_lib.stats._jit import njit, prange

OK, SEPARABLE, CONSTANT_M, CONSTANT_Q, NOT_CONVERGED, EMPTY = 0, 1, 2, 3, 4, 5
LOSS_CAP = -math.log(np.finfo(np.float64).eps)  # log_loss clips p to [eps, 1 - eps]


@njit(cache=True, nogil=True)
def _pass(x, y, mu, inv, b0, b1, want_ll):
    """Gradient, negated Hessian (and log-likelihood if asked) at (b0, b1), z = (x - mu) * inv."""
    ll = 0.0
    g0 = 0.0
    g1 = 0.0
    h00 = 0.0
    h01 = 0.0
    h11 = 0.0
    for i in range(x.shape[0]):
        z = (x[i] - mu) * inv
        eta = b0 + b1 * z
        e = math.exp(-abs(eta))
        p = 1.0 / (1.0 + e) if eta >= 0.0 else e / (1.0 + e)
        yi = float(y[i])
        if want_ll:
            ll += yi * eta - max(eta, 0.0) - math.log1p(e)
        r = yi - p
        w = p * (1.0 - p)
        g0 += r
        g1 += r * z
        h00 += w
        h01 += w * z
        h11 += w * z * z
    return ll, g0, g1, h00, h01, h11


@njit(cache=True, nogil=True)
def _positives_and_mean(x, y):
    """Number of y = 1 rows and the mean of x."""
    n1 = 0.0
    mu = 0.0
    for i in range(x.shape[0]):
        n1 += y[i]
        mu += x[i]
    return n1, mu / x.shape[0]


@njit(cache=True, nogil=True)
def _std(x, mu):
    """Population standard deviation of x about its mean mu."""
    var = 0.0
    for i in range(x.shape[0]):
        var += (x[i] - mu) ** 2
    return math.sqrt(var / x.shape[0])


@njit(cache=True, nogil=True)
def _separable(x, y):
    """Whether a threshold on x splits y = 0 from y = 1 (perfectly or with ties at the edge)."""
    min1 = np.inf
    max1 = -np.inf
    min0 = np.inf
    max0 = -np.inf
    for i in range(x.shape[0]):
        if y[i]:
            min1 = min(min1, x[i])
            max1 = max(max1, x[i])
        else:
            min0 = min(min0, x[i])
            max0 = max(max0, x[i])
    return max0 <= min1 or max1 <= min0


@njit(cache=True, nogil=True)
def _backtrack(x, y, mu, inv, b0, b1, d0, d1, ll, lam):
    """A long Newton step (d0, d1) halved until the penalised log-likelihood does not drop;
    returns the new point, its log-likelihood, gradient and negated Hessian."""
    t = 1.0
    for _ in range(60):
        nb0 = b0 + t * d0
        nb1 = b1 + t * d1
        nll, ng0, ng1, nh00, nh01, nh11 = _pass(x, y, mu, inv, nb0, nb1, True)
        nll -= 0.5 * lam * nb1 * nb1
        if nll >= ll - 1e-12 * (1.0 + abs(ll)):
            break
        t *= 0.5
    return nb0, nb1, nll, ng0, ng1, nh00, nh01, nh11


@njit(cache=True, nogil=True)
def _newton(x, y, mu, inv, b0, b1, lam, max_iter, tol):
    """Newton's method on the standardised problem from (b0, b1); returns (b0, b1, converged,
    n_iter). A step shorter than ``tol`` ends it; a step longer than 1 is backtracked."""
    ll, g0, g1, h00, h01, h11 = _pass(x, y, mu, inv, b0, b1, False)
    have_ll = False
    n_iter = 0
    for _ in range(max_iter):
        n_iter += 1
        g1 -= lam * b1
        h11 += lam
        det = h00 * h11 - h01 * h01
        if not det > 0.0:
            break
        d0 = (h11 * g0 - h01 * g1) / det
        d1 = (h00 * g1 - h01 * g0) / det
        step = max(abs(d0), abs(d1))
        if step < tol:
            return b0 + d0, b1 + d1, True, n_iter
        if step <= 1.0:
            b0 += d0
            b1 += d1
            ll, g0, g1, h00, h01, h11 = _pass(x, y, mu, inv, b0, b1, False)
            have_ll = False
            continue
        if not have_ll:
            ll = _pass(x, y, mu, inv, b0, b1, True)[0] - 0.5 * lam * b1 * b1
        b0, b1, ll, g0, g1, h00, h01, h11 = _backtrack(x, y, mu, inv, b0, b1, d0, d1, ll, lam)
        have_ll = True
    return b0, b1, False, n_iter


@njit(cache=True, nogil=True)
def fit_one(x, y, max_iter, tol, ridge, a_start=np.nan, b_start=np.nan):
    """Maximum-likelihood P(y=1|x) = sigmoid(a + b x); returns (a, b, status, n_iter).

    x is standardised internally (conditioning). Newton steps; a step longer than 1 (in
    standardised units) is halved until the log-likelihood does not drop. The fit stops
    after a step shorter than ``tol`` (the remaining error is of order tol**2). Perfectly or
    quasi-separable data have no finite MLE: they get an L2 penalty ridge/2 * b_std**2 on
    the standardised slope and are flagged SEPARABLE. (a_start, b_start) is a warm start.
    """
    n = x.shape[0]
    if n == 0:
        return np.nan, np.nan, EMPTY, 0
    n1, mu = _positives_and_mean(x, y)
    if n1 == 0.0 or n1 == n:
        return np.nan, np.nan, CONSTANT_M, 0
    sd = _std(x, mu)
    ybar = n1 / n
    b0 = math.log(ybar / (1.0 - ybar))
    if not sd > 0.0:
        return b0, 0.0, CONSTANT_Q, 0
    inv = 1.0 / sd
    lam, status = (ridge, SEPARABLE) if _separable(x, y) else (0.0, OK)
    b1 = 0.0
    if np.isfinite(a_start) and np.isfinite(b_start):
        b0 = a_start + b_start * mu
        b1 = b_start * sd
    b0, b1, converged, n_iter = _newton(x, y, mu, inv, b0, b1, lam, max_iter, tol)
    if not converged:
        status = NOT_CONVERGED
    return b0 - b1 * mu * inv, b1 * inv, status, n_iter


@njit(cache=True, nogil=True)
def auc_raw(s, y):
    """Mann-Whitney AUC of score s for y (ties count 1/2); NaN when y is constant."""
    n = s.shape[0]
    n1 = 0.0
    for i in range(n):
        n1 += y[i]
    n0 = n - n1
    if n1 == 0.0 or n0 == 0.0:
        return np.nan
    order = np.argsort(s)
    num = 0.0
    cum0 = 0.0
    i = 0
    while i < n:
        v = s[order[i]]
        c1 = 0.0
        c0 = 0.0
        j = i
        while j < n and s[order[j]] == v:
            if y[order[j]]:
                c1 += 1.0
            else:
                c0 += 1.0
            j += 1
        num += c1 * (cum0 + 0.5 * c0)
        cum0 += c0
        i = j
    return num / (n1 * n0)


@njit(cache=True, nogil=True)
def eval_fit(x, y, a, b):
    """(fitted-model AUC, raw-score AUC, cross-entropy) of a fit on held-out rows."""
    n = x.shape[0]
    if n == 0 or not np.isfinite(a):
        return np.nan, np.nan, np.nan
    ar = auc_raw(x, y)
    if b > 0.0:
        af = ar
    elif b < 0.0:
        af = 1.0 - ar
    else:
        af = 0.5 if np.isfinite(ar) else np.nan
    ce = 0.0
    for i in range(n):
        eta = a + b * x[i]
        loss = max(eta, 0.0) + math.log1p(math.exp(-abs(eta))) - y[i] * eta
        ce += min(loss, LOSS_CAP)
    return af, ar, ce / n


@njit(parallel=True, cache=True)
def fit_groups(x, y, starts, max_iter, tol, ridge):
    """fit_one for every contiguous group; arrays of a, b, status, n_iter."""
    g = starts.shape[0] - 1
    a = np.empty(g)
    b = np.empty(g)
    status = np.empty(g, np.int8)
    n_iter = np.empty(g, np.int32)
    for k in prange(g):
        lo, hi = starts[k], starts[k + 1]
        ak, bk, sk, ik = fit_one(x[lo:hi], y[lo:hi], max_iter, tol, ridge, np.nan, np.nan)
        a[k] = ak
        b[k] = bk
        status[k] = sk
        n_iter[k] = ik
    return a, b, status, n_iter


@njit(parallel=True, cache=True)
def auc_groups(s, y, starts):
    """auc_raw for every contiguous group."""
    g = starts.shape[0] - 1
    out = np.empty(g)
    for k in prange(g):
        out[k] = auc_raw(s[starts[k] : starts[k + 1]], y[starts[k] : starts[k + 1]])
    return out


@njit(cache=True, nogil=True)
def _auc_sorted_subset(xs, ys, fs, f):
    """Raw AUC of the rows of fold f, given rows already sorted by score."""
    n1 = 0.0
    n0 = 0.0
    num = 0.0
    i = 0
    m = xs.shape[0]
    while i < m:
        v = xs[i]
        c1 = 0.0
        c0 = 0.0
        j = i
        while j < m and xs[j] == v:
            if fs[j] == f:
                if ys[j]:
                    c1 += 1.0
                else:
                    c0 += 1.0
            j += 1
        num += c1 * (n0 + 0.5 * c0)
        n0 += c0
        n1 += c1
        i = j
    if n1 == 0.0 or n0 == 0.0:
        return np.nan
    return num / (n1 * n0)


@njit(cache=True, nogil=True)
def _argsort_group(x, lo, hi, perm):
    """perm[lo:hi] = lo + argsort(x[lo:hi]): rows of one group in score order."""
    order = np.argsort(x[lo:hi])
    for i in range(hi - lo):
        perm[lo + i] = lo + order[i]


@njit(parallel=True, cache=True)
def argsort_groups(x, starts):
    """Row order that sorts every contiguous group by score (groups stay in place)."""
    perm = np.empty(x.shape[0], np.int64)
    for k in prange(starts.shape[0] - 1):
        _argsort_group(x, starts[k], starts[k + 1], perm)
    return perm


@njit(cache=True, nogil=True)
def argsort_groups_serial(x, starts):
    """:func:`argsort_groups` on the calling thread without the GIL; the same order."""
    perm = np.empty(x.shape[0], np.int64)
    for k in range(starts.shape[0] - 1):
        _argsort_group(x, starts[k], starts[k + 1], perm)
    return perm


@njit(cache=True, nogil=True)
def _fold_size(fs, f):
    """Rows in fold f."""
    nt = 0
    for i in range(fs.shape[0]):
        if fs[i] == f:
            nt += 1
    return nt


@njit(cache=True, nogil=True)
def _training_rows(xs, ys, fs, f, xtr, ytr):
    """Copy the rows outside fold f into (xtr, ytr); returns how many."""
    itr = 0
    for i in range(xs.shape[0]):
        if fs[i] != f:
            xtr[itr] = xs[i]
            ytr[itr] = ys[i]
            itr += 1
    return itr


@njit(cache=True, nogil=True)
def _oriented_auc(ar, b):
    """AUC of the fitted probability: the raw AUC, flipped for a negative slope, 0.5 for a flat fit."""
    if b > 0.0:
        return ar
    if b < 0.0:
        return 1.0 - ar
    return 0.5 if np.isfinite(ar) else np.nan


@njit(cache=True, nogil=True)
def _fold_ce(xs, ys, fs, f, a, b, nt):
    """Mean log loss of sigmoid(a + b x) on fold f (each row's loss capped like log_loss)."""
    c = 0.0
    for i in range(xs.shape[0]):
        if fs[i] == f:
            eta = a + b * xs[i]
            loss = max(eta, 0.0) + math.log1p(math.exp(-abs(eta))) - ys[i] * eta
            c += min(loss, LOSS_CAP)
    return c / nt


@njit(cache=True, nogil=True)
def _cv_group(xs, ys, fs, k, n_folds, max_iter, tol, ridge, auc, aucr, ce, status, slope, n_test):
    """CV of one group whose rows (xs, ys, fs) are sorted by score; writes row k of the outputs."""
    m = xs.shape[0]
    xtr = np.empty(m)
    ytr = np.empty(m, np.int8)
    for f in range(n_folds):
        nt = _fold_size(fs, f)
        n_test[k, f] = nt
        if nt == 0 or nt == m:
            continue
        itr = _training_rows(xs, ys, fs, f, xtr, ytr)
        a, b, st, _ = fit_one(xtr[:itr], ytr[:itr], max_iter, tol, ridge, np.nan, np.nan)
        status[k, f] = st
        slope[k, f] = b
        if not np.isfinite(a):
            continue
        ar = _auc_sorted_subset(xs, ys, fs, f)
        aucr[k, f] = ar
        auc[k, f] = _oriented_auc(ar, b)
        ce[k, f] = _fold_ce(xs, ys, fs, f, a, b, nt)


@njit(cache=True)
def _cv_outputs(g, n_folds):
    auc = np.full((g, n_folds), np.nan)
    aucr = np.full((g, n_folds), np.nan)
    ce = np.full((g, n_folds), np.nan)
    status = np.full((g, n_folds), EMPTY, np.int8)
    slope = np.full((g, n_folds), np.nan)
    n_test = np.zeros((g, n_folds), np.int32)
    return auc, aucr, ce, status, slope, n_test


@njit(parallel=True, cache=True)
def cv_groups(xs, ys, fs, starts, n_folds, max_iter, tol, ridge):
    """K-fold CV inside every group: fit on the other folds, score on the held-out fold.

    Rows come grouped (``starts``) and sorted by score inside each group
    (:func:`argsort_groups`), so every held-out fold is scanned in score order for its AUC.
    Returns (n_groups, n_folds) arrays: fitted AUC, raw AUC, cross-entropy, status of the
    training fit, slope, number of held-out rows. Groups run in parallel (numba threads);
    :func:`cv_groups_serial` is the same on the calling thread.
    """
    g = starts.shape[0] - 1
    auc, aucr, ce, status, slope, n_test = _cv_outputs(g, n_folds)
    for k in prange(g):
        lo, hi = starts[k], starts[k + 1]
        _cv_group(
            xs[lo:hi], ys[lo:hi], fs[lo:hi], k, n_folds, max_iter, tol, ridge,
            auc, aucr, ce, status, slope, n_test,
        )  # fmt: skip
    return auc, aucr, ce, status, slope, n_test


@njit(cache=True, nogil=True)
def cv_groups_serial(xs, ys, fs, starts, n_folds, max_iter, tol, ridge):
    """:func:`cv_groups` on the calling thread without the GIL (for a pool of threads
    running several (Q, M) pairs at once); the same results, bit for bit."""
    g = starts.shape[0] - 1
    auc, aucr, ce, status, slope, n_test = _cv_outputs(g, n_folds)
    for k in range(g):
        lo, hi = starts[k], starts[k + 1]
        _cv_group(
            xs[lo:hi], ys[lo:hi], fs[lo:hi], k, n_folds, max_iter, tol, ridge,
            auc, aucr, ce, status, slope, n_test,
        )  # fmt: skip
    return auc, aucr, ce, status, slope, n_test


@njit(cache=True, nogil=True)
def _add_row(row, positive, num, cum0, w1, m):
    """One row without ties: a positive adds its weight times the negatives' weight below it;
    a negative joins those."""
    if positive:
        for j in range(m):
            wj = float(row[j])
            num[j] += wj * cum0[j]
            w1[j] += wj
    else:
        for j in range(m):
            cum0[j] += row[j]


@njit(cache=True, nogil=True)
def _add_tied_block(y, cluster, weights_t, s0, s1, lo, m, num, cum0, w1, c1, c0):
    """Rows s0:s1 with one score: positives count the negatives below in full, the tied ones by half."""
    c1[:] = 0.0
    c0[:] = 0.0
    for i in range(s0, s1):
        row = weights_t[cluster[i], lo : lo + m]
        if y[i]:
            for j in range(m):
                c1[j] += row[j]
        else:
            for j in range(m):
                c0[j] += row[j]
    for j in range(m):
        num[j] += c1[j] * (cum0[j] + 0.5 * c0[j])
        cum0[j] += c0[j]
        w1[j] += c1[j]


@njit(cache=True, nogil=True)
def _weighted_auc(num, w1, cum0, out, lo, m):
    """out[lo:lo + m]: each resample's AUC, NaN with only one class."""
    for j in range(m):
        if w1[j] > 0.0 and cum0[j] > 0.0:
            out[lo + j] = num[j] / (w1[j] * cum0[j])
        else:
            out[lo + j] = np.nan


@njit(parallel=True, cache=True)
def bootstrap_auc_sorted(y, cluster, block_starts, weights_t):
    """Raw-score AUC for each column of cluster weights ``weights_t`` (n_clusters, B).

    Rows are sorted by score; ``block_starts`` delimit runs of tied scores. A resample
    gives each row the weight of its cluster, so its AUC is the weighted Mann-Whitney
    statistic. One pass over the rows updates all resamples at once (a short vector per
    row), so the work is SIMD-friendly; resamples are split in chunks across threads.
    """
    n_boot = weights_t.shape[1]
    n_blocks = block_starts.shape[0] - 1
    chunk = 128
    n_chunks = (n_boot + chunk - 1) // chunk
    out = np.empty(n_boot)
    for ch in prange(n_chunks):
        lo = ch * chunk
        m = min(n_boot, lo + chunk) - lo
        num = np.zeros(m)
        cum0 = np.zeros(m)
        w1 = np.zeros(m)
        c1 = np.zeros(m)
        c0 = np.zeros(m)
        for kb in range(n_blocks):
            s0 = block_starts[kb]
            s1 = block_starts[kb + 1]
            if s1 - s0 == 1:
                _add_row(weights_t[cluster[s0], lo : lo + m], y[s0], num, cum0, w1, m)
            else:
                _add_tied_block(y, cluster, weights_t, s0, s1, lo, m, num, cum0, w1, c1, c0)
        _weighted_auc(num, w1, cum0, out, lo, m)
    return out
