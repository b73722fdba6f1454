"""Logistic regression, AUC and cross-entropy against statsmodels and scikit-learn.

Tolerances: coefficients agree with statsmodels' Newton fit (tol 1e-12) to 1e-6; our fit
stops after a Newton step shorter than 1e-8 in standardised units, so its remaining error is
of order 1e-16, and the held-out cross-entropy agrees with sklearn's log_loss to 1e-9.
AUCs are exact (rank statistics): 1e-12.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from iqa_lib.stats import _kernels as K
from iqa_lib.stats.bootstrap import cluster_weights, percentile_ci
from iqa_lib.stats.logistic import (
    STATUS_NAMES,
    auc_score,
    bootstrap_auc,
    cross_entropy,
    cv_groups,
    evaluate,
    fit_logistic,
    fit_logistic_groups,
    grouped_auc,
)


def _data(n=500, seed=0, a=0.3, b=1.2, loc=5.0, scale=3.0):
    rng = np.random.default_rng(seed)
    q = rng.normal(loc, scale, n)
    m = (rng.random(n) < expit(a + b * (q - loc) / scale)).astype(int)
    return q, m


def _statsmodels(q, m):
    res = sm.Logit(m, sm.add_constant(q)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    return res.params


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_matches_statsmodels_and_sklearn(seed):
    q, m = _data(seed=seed)
    fit = fit_logistic(q, m)
    a, b = _statsmodels(q, m)
    assert fit.status == "ok"
    assert fit.intercept == pytest.approx(a, abs=1e-6)
    assert fit.slope == pytest.approx(b, abs=1e-6)
    clf = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(q[:, None], m)
    np.testing.assert_allclose(fit.predict_proba(q), clf.predict_proba(q[:, None])[:, 1], atol=1e-5)


def test_auc_and_cross_entropy_match_sklearn_on_held_out_rows():
    q, m = _data(n=2000, seed=3)
    fit = fit_logistic(q[:1500], m[:1500])
    auc, auc_raw, ce = evaluate(fit, q[1500:], m[1500:])
    p = fit.predict_proba(q[1500:])
    assert auc == pytest.approx(roc_auc_score(m[1500:], p), abs=1e-12)
    assert auc_raw == pytest.approx(roc_auc_score(m[1500:], q[1500:]), abs=1e-12)
    assert ce == pytest.approx(log_loss(m[1500:], p), abs=1e-9)
    assert cross_entropy(m[1500:], fit.decision(q[1500:])) == pytest.approx(ce, abs=1e-12)


def test_negative_slope_gives_flipped_auc():
    q, m = _data(n=1000, b=-1.0, seed=4)
    fit = fit_logistic(q[:800], m[:800])
    auc, auc_raw, _ = evaluate(fit, q[800:], m[800:])
    assert fit.slope < 0
    assert auc == pytest.approx(1 - auc_raw, abs=1e-12)
    assert auc == pytest.approx(roc_auc_score(m[800:], fit.predict_proba(q[800:])), abs=1e-12)


def test_cross_entropy_clips_like_log_loss():
    m = np.array([0, 1, 1, 0])
    eta = np.array([50.0, -60.0, 3.0, -2.0])  # two confidently wrong predictions
    want = log_loss(m, expit(eta))
    assert cross_entropy(m, eta) == pytest.approx(want, rel=1e-9)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=40))
def test_auc_with_ties_equals_roc_auc_score(pairs):
    s = np.array([p[0] for p in pairs], dtype=float)
    m = np.array([p[1] for p in pairs])
    if m.all() or not m.any():
        with pytest.raises(ValueError, match="one class"):
            auc_score(s, m)
        return
    assert auc_score(s, m) == pytest.approx(roc_auc_score(m, s), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.booleans(), st.integers(0, 3)), min_size=4, max_size=40
    ),
    st.integers(0, 10_000),
)
def test_weighted_bootstrap_auc_equals_sklearn_with_sample_weights(rows, seed):
    s = np.array([r[0] for r in rows], dtype=float)
    m = np.array([r[1] for r in rows])
    c = np.array([r[2] for r in rows])
    w = np.vstack([np.ones(4), cluster_weights(4, 5, seed)])
    got = bootstrap_auc(s, m, c, w)
    for b in range(w.shape[0]):
        rw = w[b][c]
        if rw[m == 1].sum() == 0 or rw[m == 0].sum() == 0:
            assert np.isnan(got[b])
        else:
            assert got[b] == pytest.approx(roc_auc_score(m, s, sample_weight=rw), abs=1e-12)


def test_separable_data_are_flagged_and_keep_the_sign():
    q = np.arange(20.0)
    m = (q >= 10).astype(int)  # complete separation
    fit = fit_logistic(q, m)
    assert fit.status == "separable" and np.isfinite(fit.slope) and fit.slope > 0
    m2 = (q >= 10).astype(int)
    q2 = q.copy()
    q2[9] = q2[10]  # quasi-separation: one tie at the boundary
    assert fit_logistic(q2, m2).status == "separable"
    fit_neg = fit_logistic(q, 1 - m)
    assert fit_neg.status == "separable" and fit_neg.slope < 0


def test_constant_m_and_constant_q_are_flagged_not_crashed():
    fit = fit_logistic([1.0, 2.0, 3.0], [1, 1, 1])
    assert fit.status == "constant_m" and np.isnan(fit.slope) and not fit.fitted
    fit = fit_logistic([2.0, 2.0, 2.0, 2.0], [1, 0, 1, 1])
    assert fit.status == "constant_q" and fit.slope == 0
    assert fit.intercept == pytest.approx(np.log(3))
    auc, auc_raw, _ = evaluate(fit, [1.0, 2.0], [0, 1])
    assert auc == 0.5 and auc_raw == 1.0
    assert fit_logistic([], []).status == "empty"


def test_nan_and_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic([1.0, np.nan], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        fit_logistic([1.0, 2.0], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic([1.0, 2.0], [0.0, np.nan])
    with pytest.raises(ValueError, match="differ in length"):
        fit_logistic([1.0, 2.0, 3.0], [0, 1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.booleans()), min_size=1, max_size=30))
def test_fit_never_crashes_and_ok_fits_solve_the_score_equations(rows):
    q = np.array([r[0] for r in rows])
    m = np.array([r[1] for r in rows])
    fit = fit_logistic(q, m)
    assert fit.status in STATUS_NAMES.values()
    if fit.status == "ok":
        p = fit.predict_proba(q)
        scale = max(1.0, np.abs(q).max())
        assert abs((m - p).sum()) < 1e-6 * len(q)
        assert abs(((m - p) * q).sum()) < 1e-6 * len(q) * scale


def test_batched_group_fits_match_statsmodels_per_group():
    rng = np.random.default_rng(6)
    groups = rng.integers(0, 30, 3000)
    q = rng.normal(size=3000) * (1 + groups % 3)
    m = (rng.random(3000) < expit(0.5 * q + (groups % 5 - 2) * 0.3)).astype(int)
    res = fit_logistic_groups(q, m, groups)
    aucs = grouped_auc(q, m, groups)
    for g in range(30):
        sel = groups == g
        a, b = _statsmodels(q[sel], m[sel])
        assert res["status"][g] == 0
        assert res["intercept"][g] == pytest.approx(a, abs=1e-6)
        assert res["slope"][g] == pytest.approx(b, abs=1e-6)
        assert aucs[g] == pytest.approx(roc_auc_score(m[sel], q[sel]), abs=1e-12)


def _sklearn_cv(q, m, groups, folds, k):
    auc, ce = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in np.unique(groups):
            for f in range(k):
                tr = (groups == g) & (folds != f)
                te = (groups == g) & (folds == f)
                if len(set(m[tr])) < 2 or len(set(m[te])) < 2:
                    continue
                a, b = _statsmodels(q[tr], m[tr])
                eta = a + b * q[te]
                auc[g, f] = roc_auc_score(m[te], eta)
                ce[g, f] = log_loss(m[te], expit(eta), labels=[0, 1])
    return auc, ce


def test_cv_groups_match_a_statsmodels_loop():
    rng = np.random.default_rng(7)
    n_groups, size, k = 40, 60, 5
    groups = np.repeat(np.arange(n_groups), size)
    q = rng.normal(size=groups.size)
    m = (rng.random(groups.size) < expit(0.8 * q)).astype(int)
    folds = np.tile(np.arange(size) % k, n_groups)
    rng.shuffle(folds)
    res = cv_groups(q, m, groups, folds, k)
    auc, ce = _sklearn_cv(q, m, groups, folds, k)
    scored = np.isfinite(res["auc"]) & (res["status"] <= 1)
    assert scored.sum() == len(auc) > 150
    for (g, f), v in auc.items():
        assert res["auc"][g, f] == pytest.approx(v, abs=1e-12)
        assert res["ce"][g, f] == pytest.approx(ce[g, f], abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=8), st.integers(0, 1000))
def test_cv_groups_handle_tiny_groups_and_constant_m(sizes, seed):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    q = rng.integers(0, 3, groups.size).astype(float)  # ties and constant Q are common
    m = rng.integers(0, 2, groups.size)
    folds = rng.integers(0, 5, groups.size)
    res = cv_groups(q, m, groups, folds, 5)
    for g, size in enumerate(sizes):
        assert res["n_test"][g].sum() == size
    auc = res["auc"]
    finite = np.isfinite(auc)
    assert ((auc[finite] >= 0) & (auc[finite] <= 1)).all()
    # a fold with a score has a fitted model
    assert np.isin(res["status"][finite], [0, 1, 3, 4]).all()


def test_cluster_bootstrap_auc_interval_covers_the_true_auc():
    """Clustered rows (a random effect per image): the population AUC is known."""
    from scipy.stats import norm

    delta, n_clusters, per, sims = 0.8, 200, 5, 150
    true_auc = norm.cdf(delta / np.sqrt(2 * (1.0 + 1.0)))
    rng = np.random.default_rng(12)
    hits = 0
    for s in range(sims):
        c = np.repeat(np.arange(n_clusters), per)
        m = rng.integers(0, 2, c.size)
        q = delta * m + rng.normal(size=n_clusters)[c] + rng.normal(size=c.size)
        reps = bootstrap_auc(q, m, c, cluster_weights(n_clusters, 300, s))
        lo, hi = percentile_ci(reps)
        hits += lo <= true_auc <= hi
    assert 0.88 <= hits / sims <= 0.99, hits / sims


def test_pure_python_kernels_give_the_same_numbers():
    """Without numba the kernels run as plain Python; they must agree with the compiled ones."""
    if not hasattr(K.fit_one, "py_func"):
        pytest.skip("numba not installed: the kernels already run as Python")
    q, m = _data(n=200, seed=9)
    y = m.astype(np.int8)
    assert K.fit_one.py_func(q, y, 100, 1e-8, 1e-3, np.nan, np.nan) == pytest.approx(
        K.fit_one(q, y, 100, 1e-8, 1e-3, np.nan, np.nan), abs=1e-12
    )
    groups = np.repeat(np.arange(4), 50).astype(np.int64)
    starts = np.arange(0, 201, 50, dtype=np.int64)
    folds = (np.arange(200) % 5).astype(np.int16)
    o = K.argsort_groups(q, starts)  # the kernel takes rows sorted by score in each group
    np.testing.assert_array_equal(o, K.argsort_groups_serial.py_func(q, starts))
    q, y, folds = q[o], y[o], folds[o]
    fast = K.cv_groups(q, y, folds, starts, 5, 100, 1e-8, 1e-3)
    slow = K.cv_groups.py_func(q, y, folds, starts, 5, 100, 1e-8, 1e-3)
    np.testing.assert_array_equal(np.stack(fast[:3]), np.stack(K.cv_groups_serial(q, y, folds, starts, 5, 100, 1e-8, 1e-3)[:3]))
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    del groups
