"""DeLong (ordinary and clustered), Holm and the paired bootstrap against independent code."""

from __future__ import annotations

import numpy as np
import pytest
from MLstatkit import Delong_test
from scipy.stats import norm
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from iqa_lib.stats.delong import delong, delong_test, paired_z, placement_values
from iqa_lib.stats.multiple import holm
from iqa_lib.stats.paired_bootstrap import (
    auc_weights,
    cluster_auc_reps,
    diff_summary,
    paired_auc_bootstrap,
    paired_srcc_bootstrap,
)


def _data(n=150, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int8)
    latent = rng.normal(size=n) + y
    s = np.stack([latent + rng.normal(0, s, n) for s in (0.5, 1.0, 2.0)])
    if ties:
        s = np.round(s * 2) / 2  # many tied scores, within and across classes
    return s, y


def _brute(s, y):
    """AUCs and DeLong covariance from the O(n^2) kernel psi(x_i, y_j)."""
    pos, neg = y == 1, y == 0
    v10, v01, auc = [], [], []
    for x in s:
        psi = (x[pos][:, None] > x[neg][None, :]) + 0.5 * (x[pos][:, None] == x[neg][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        auc.append(psi.mean())
    cov = np.cov(np.array(v10)) / pos.sum() + np.cov(np.array(v01)) / neg.sum()
    return np.array(auc), cov, np.array(v10), np.array(v01)


def _brute_clustered(s, y, cl):
    """Obuchowski (1997) clustered covariance, written out from the paper's formulas."""
    pos, neg = y == 1, y == 0
    big_m, big_n = pos.sum(), neg.sum()
    auc, _, v10, v01 = _brute(s, y)
    ids = np.unique(cl)
    k = len(s)
    x10 = np.array([[v10[r][cl[pos] == c].sum() for c in ids] for r in range(k)])
    x01 = np.array([[v01[r][cl[neg] == c].sum() for c in ids] for r in range(k)])
    m_c = np.array([(cl[pos] == c).sum() for c in ids])
    n_c = np.array([(cl[neg] == c).sum() for c in ids])
    i10, i01, i = (m_c > 0).sum(), (n_c > 0).sum(), ids.size
    cov = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            da10, db10 = x10[a] - m_c * auc[a], x10[b] - m_c * auc[b]
            da01, db01 = x01[a] - n_c * auc[a], x01[b] - n_c * auc[b]
            s10 = i10 / ((i10 - 1) * big_m) * (da10 * db10).sum()
            s01 = i01 / ((i01 - 1) * big_n) * (da01 * db01).sum()
            s11 = i / (i - 1) * ((da10 * db01).sum() + (db10 * da01).sum())
            cov[a, b] = s10 / big_m + s01 / big_n + s11 / (big_m * big_n)
    return auc, cov


@pytest.mark.parametrize("ties", [True, False])
def test_delong_matches_brute_force_placements_and_sklearn(ties):
    s, y = _data(ties=ties)
    res = delong(s, y)
    auc, cov, v10, _ = _brute(s, y)
    np.testing.assert_allclose(res.auc, auc, atol=1e-12)
    np.testing.assert_allclose(res.cov, cov, atol=1e-12)
    assert res.auc == pytest.approx([roc_auc_score(y, x) for x in s], abs=1e-12)
    np.testing.assert_allclose(placement_values(s[0], y)[y == 1], v10[0], atol=1e-12)
    assert res.n_pos == y.sum() and res.n_neg == (y == 0).sum() and res.n_clusters is None


@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 2)])
def test_delong_test_matches_mlstatkit(pair):
    s, y = _data(ties=True, seed=1)
    a, b = s[pair[0]], s[pair[1]]
    z, p, _, _, auc_a, auc_b, info = Delong_test(y, a, b)
    assert info["method"] == "delong"
    res = delong_test(a, b, y)
    # MLstatkit signs z as (AUC_B - AUC_A) / SE
    assert res.z == pytest.approx(-z, abs=1e-6)
    assert res.p_value == pytest.approx(p, abs=1e-6)
    assert (res.auc_a, res.auc_b) == pytest.approx((auc_a, auc_b), abs=1e-6)
    assert res.var_diff == pytest.approx(info["var_diff"], abs=1e-6, rel=1e-6)
    assert res.p_value == pytest.approx(2 * norm.sf(abs(res.diff) / np.sqrt(res.var_diff)))


def test_clustered_delong_matches_obuchowski_formulas():
    rng = np.random.default_rng(2)
    s, y = _data(n=120, seed=2)
    cl = rng.integers(0, 25, size=y.size)  # clusters of mixed classes and sizes
    res = delong(s, y, clusters=cl)
    auc, cov = _brute_clustered(s, y, cl)
    np.testing.assert_allclose(res.auc, auc, atol=1e-12)
    np.testing.assert_allclose(res.cov, cov, atol=1e-12)
    assert res.n_clusters == 25
    # cluster codes are labels only: renaming them changes nothing
    np.testing.assert_allclose(delong(s, y, clusters=cl * 7 + 3).cov, res.cov, atol=1e-15)


def test_clustered_delong_with_singleton_clusters_is_ordinary_delong():
    """One row per cluster: I10 = n_pos, I01 = n_neg and the cross term S11 is 0."""
    s, y = _data(seed=3)
    ordinary = delong(s, y)
    clustered = delong(s, y, clusters=np.arange(y.size)[::-1])
    np.testing.assert_allclose(clustered.cov, ordinary.cov, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(clustered.auc, ordinary.auc)


def test_clustered_variance_agrees_with_the_cluster_bootstrap():
    """Correlated rows within clusters: Obuchowski's variance matches the cluster bootstrap,
    ordinary DeLong (rows as independent) understates it."""
    rng = np.random.default_rng(4)
    n_cl, per = 400, 6
    cl = np.repeat(np.arange(n_cl), per)
    u = rng.normal(size=n_cl)[cl]  # shared cluster effect drives both y and the score
    y = (u + rng.normal(0, 1, cl.size) > 0).astype(np.int8)
    x = u + rng.normal(0, 1, cl.size)
    var_cl = delong(x, y, clusters=cl).cov[0, 0]
    var_iid = delong(x, y).cov[0, 0]
    reps = cluster_auc_reps(x, y, cl, auc_weights(n_cl, 2000, seed=0))
    var_boot = np.nanvar(reps, ddof=1)
    # sqrt(2 / B) = 3% Monte Carlo error on a variance; estimators differ by O(1 / n_clusters)
    assert var_cl == pytest.approx(var_boot, rel=0.15)
    assert var_iid < 0.8 * var_cl


def test_paired_bootstrap_agrees_with_delong_at_large_n():
    """n = 4000 independent rows: the bootstrap SE of AUC_a - AUC_b and DeLong's agree to
    within 10% (Monte Carlo error of an SE from B = 2000: about 1.6%), so do the z
    statistics, and the percentile interval is diff +- 1.96 SE up to 0.25 SE."""
    rng = np.random.default_rng(5)
    n = 4000
    y = (rng.random(n) < 0.5).astype(np.int8)
    latent = rng.normal(size=n) + 0.8 * y
    a = latent + rng.normal(0, 0.8, n)
    b = latent + rng.normal(0, 1.2, n)
    dl = delong_test(a, b, y)
    bt = paired_auc_bootstrap(a, b, y, np.arange(n), n_boot=2000, seed=0)
    se = np.sqrt(dl.var_diff)
    assert bt["diff"] == pytest.approx(dl.diff, abs=1e-12)
    assert bt["se"] == pytest.approx(se, rel=0.10)
    assert 2 < abs(dl.z) < 8  # a real, not overwhelming, difference
    assert dl.diff / bt["se"] == pytest.approx(dl.z, rel=0.10)
    assert abs(norm.isf(bt["p_value"] / 2) - abs(dl.z)) < 0.1 * abs(dl.z)
    assert bt["ci_low"] == pytest.approx(dl.diff - 1.96 * se, abs=0.25 * se)
    assert bt["ci_high"] == pytest.approx(dl.diff + 1.96 * se, abs=0.25 * se)


def test_identical_rankings_give_zero_difference_and_p_one():
    s, y = _data(seed=6)
    t = delong_test(s[0], 3 * s[0] + 1, y, clusters=np.arange(y.size) // 3)
    assert t.diff == 0.0 and t.z == 0.0 and t.p_value == 1.0
    bt = paired_auc_bootstrap(s[0], np.exp(s[0]), y, np.arange(y.size) // 3, n_boot=100)
    assert bt["diff"] == 0.0 and bt["p_value"] == 1.0 and bt["ci_low"] == bt["ci_high"] == 0.0
    g = np.random.default_rng(0).random(30)
    acc = np.random.default_rng(1).random(30)
    st = paired_srcc_bootstrap(g, g**3, acc, n_boot=100)
    assert st["diff"] == 0.0 and st["p_value"] == 1.0


def test_paired_z_and_one_class():
    assert np.isnan(delong_test([1, 2, 3], [3, 2, 1], [1, 1, 1]).p_value)
    t = paired_z(np.array([0.7, 0.6]), np.array([[0.01, 0.0], [0.0, 0.01]]), 0, 1)
    assert t.z == pytest.approx(0.1 / np.sqrt(0.02))
    assert np.isnan(diff_summary(0.1, np.array([np.nan]))["p_value"])  # no valid resample
    assert np.isnan(diff_summary(0.1, np.full(5, 0.1))["p_value"])  # zero SE, nonzero diff
    assert diff_summary(0.0, np.zeros(5))["p_value"] == 1.0
    with pytest.raises(ValueError, match="0/1"):
        delong([1.0, 2.0], [0, 2])


def test_holm_matches_statsmodels_and_keeps_nans():
    rng = np.random.default_rng(7)
    for _ in range(4):  # statsmodels runs gc.collect() on every call (0.1 s)
        p = rng.random(12) ** 3
        p[rng.random(12) < 0.25] = np.nan
        p[rng.integers(0, 12)] = p[rng.integers(0, 12)]  # ties
        ok = np.isfinite(p)
        expected = np.full(p.size, np.nan)
        if ok.any():
            expected[ok] = multipletests(p[ok], method="holm")[1]
        np.testing.assert_allclose(holm(p), expected, rtol=0, atol=1e-15)
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert holm([]).size == 0
    adj = holm([0.01, 0.04, 0.03, 0.5])
    assert (adj <= 1).all() and list(adj) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    with pytest.raises(ValueError):
        holm([0.5, 1.5])
