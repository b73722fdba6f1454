"""Correlations and their bootstrap against scipy.stats, edge cases, CI coverage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from iqa_lib.stats.bootstrap import bootstrap_indices, cluster_weights, percentile_ci
from iqa_lib.stats.correlation import (
    Resampled,
    bootstrap_correlations,
    correlation_rows,
    point_correlations,
    resampled_correlations,
)

SCIPY = {"krcc": stats.kendalltau, "srcc": stats.spearmanr, "plcc": stats.pearsonr}


def _scipy(stat, x, y):
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return SCIPY[stat](x, y)[0]


def test_point_estimates_and_p_values_match_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=75)
    y = 0.5 * x + rng.normal(size=75)
    table = bootstrap_correlations(x, y, n_boot=200, seed=3).set_index("stat")
    for stat, func in SCIPY.items():
        r, p = func(x, y)
        assert table.loc[stat, "r"] == pytest.approx(r, abs=1e-12)
        assert table.loc[stat, "abs_r"] == pytest.approx(abs(r), abs=1e-12)
        assert table.loc[stat, "p_value"] == pytest.approx(p, rel=1e-9)
        assert table.loc[stat, "ci_low"] < r < table.loc[stat, "ci_high"]
        assert table.loc[stat, "n_boot_valid"] == 200


@pytest.mark.parametrize("stat", ["krcc", "srcc", "plcc"])
def test_every_bootstrap_replicate_equals_scipy_on_that_resample(stat):
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(size=30), 1)  # rounding makes ties, resampling makes more
    y = np.round(x + rng.normal(size=30), 1)
    idx = bootstrap_indices(30, 50, seed=4)
    reps = correlation_rows(x[idx], y[idx], stat)
    shared = resampled_correlations(Resampled(x, idx), Resampled(y, idx))[stat]
    expected = [_scipy(stat, x[i], y[i]) for i in idx]
    np.testing.assert_allclose(reps, expected, atol=1e-12)
    np.testing.assert_allclose(shared, expected, atol=1e-6)  # float32 signs, float64 sums


def test_bootstrap_is_seeded_and_deterministic():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(2, 40))
    a = bootstrap_correlations(x, y, n_boot=100, seed=7)
    b = bootstrap_correlations(x, y, n_boot=100, seed=7)
    c = bootstrap_correlations(x, y, n_boot=100, seed=8)
    assert a.equals(b)
    assert not a.equals(c)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=3, max_size=25),
)
def test_ties_and_constant_inputs_match_scipy_or_give_nan(pairs):
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    point = point_correlations(x, y)
    idx = np.arange(x.size)[None, :]
    reps = resampled_correlations(Resampled(x, idx), Resampled(y, idx))
    for stat in SCIPY:
        want = _scipy(stat, x, y)
        if np.isnan(want):
            assert np.isnan(point[stat][0]) and np.isnan(point[stat][1])
            assert np.isnan(reps[stat][0])
        else:
            assert point[stat][0] == pytest.approx(want, abs=1e-12)
            assert reps[stat][0] == pytest.approx(want, abs=1e-6)


def test_constant_variable_gives_nan_not_a_crash():
    table = bootstrap_correlations(np.ones(10), np.arange(10.0), n_boot=20)
    assert table["r"].isna().all() and table["ci_low"].isna().all()
    assert (table["n_boot_valid"] == 0).all()


def test_nan_scores_are_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_correlations([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 2"):
        point_correlations([1.0], [2.0])
    with pytest.raises(ValueError, match="differ in length"):
        point_correlations([1.0, 2.0], [2.0, 3.0, 4.0])


def test_tiny_group_count_is_handled():
    table = bootstrap_correlations([1.0, 2.0], [2.0, 1.0], n_boot=50, seed=0)
    assert table.set_index("stat").loc["plcc", "r"] == pytest.approx(-1.0)
    # many resamples of 2 points repeat one point: undefined there, counted, not crashed
    assert (table["n_boot_valid"] < 50).all()


def test_percentile_ci_ignores_nan_replicates():
    assert percentile_ci(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == pytest.approx((1.5, 2.5))
    lo, hi = percentile_ci(np.full(5, np.nan))
    assert np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError):
        percentile_ci(np.ones(3), level=1.5)


def test_cluster_weights_count_index_draws():
    w = cluster_weights(7, 5, seed=3)
    idx = bootstrap_indices(7, 5, seed=3)
    assert w.shape == (5, 7) and (w.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(w[2], np.bincount(idx[2], minlength=7))


def test_bootstrap_intervals_cover_the_true_correlation_at_about_the_nominal_rate():
    """Bivariate normal, rho = 0.6, 75 points: the true PLCC, SRCC, KRCC are known."""
    rho, n, sims = 0.6, 75, 200
    truth = {
        "plcc": rho,
        "srcc": 6 / np.pi * np.arcsin(rho / 2),
        "krcc": 2 / np.pi * np.arcsin(rho),
    }
    rng = np.random.default_rng(11)
    cov = [[1, rho], [rho, 1]]
    hits = dict.fromkeys(truth, 0)
    for s in range(sims):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        table = bootstrap_correlations(x, y, n_boot=400, seed=s).set_index("stat")
        for stat, value in truth.items():
            hits[stat] += table.loc[stat, "ci_low"] <= value <= table.loc[stat, "ci_high"]
    for stat, h in hits.items():
        assert 0.88 <= h / sims <= 0.99, (stat, h / sims)
