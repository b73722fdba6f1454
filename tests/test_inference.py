"""The rules of inference: when a p-value, a significance mark or a verdict may be stated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from iqa_lib.analysis.inference import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_TESTED,
    RULE_TEXT,
    Comparison,
    Estimate,
    auc_test_valid,
    comparison_verdict,
    holm_valid,
    mean_interval,
    significance,
    srcc_test_valid,
    threshold_verdict,
    vs_best_mark,
)
from iqa_lib.presentation.tables import mark_vs_best
from iqa_lib.stats.hanley_mcneil import hanley_mcneil_interval, hanley_mcneil_se


def test_validity_follows_the_small_n_rule():
    assert list(auc_test_valid([30, 29, 100, 2], [30, 100, 29, 2])) == [True, False, False, False]
    assert list(srcc_test_valid([10, 9, np.nan, 75])) == [True, False, False, True]


def test_srcc_test_needs_enough_images_in_its_smallest_group():
    # 75 groups of the same 10 images (the demo) are not 75 independent units
    assert list(srcc_test_valid([75, 75, 75, 9], [10, 29, 30, 40])) == [False, False, True, False]
    assert list(srcc_test_valid([75, 75], [np.nan, 30])) == [True, True]  # an older file: groups alone
    assert "at least 10 groups of at least 30 images" in RULE_TEXT


def test_holm_runs_over_the_valid_tests_only():
    p = np.array([0.01, 0.04, 1e-30, 0.03, 0.2])
    valid = np.array([True, True, False, True, True])
    ours = holm_valid(p, valid)
    expected = multipletests(p[valid], method="holm")[1]  # independent: statsmodels
    np.testing.assert_allclose(ours[valid], expected, rtol=1e-12)
    assert np.isnan(ours[2])  # the invalid (tiny) p-value neither gets adjusted nor moves the others


def test_significance_is_untested_not_false_where_the_test_is_invalid():
    sig = significance([0.001, 0.5, 0.001, np.nan], [True, True, False, True], 0.05)
    assert sig[0] is np.True_ or sig[0] is True
    assert not sig[1]
    assert sig[2] is pd.NA and sig[3] is pd.NA


def test_vs_best_mark_shows_a_p_value_only_for_a_valid_test():
    assert vs_best_mark(1.8e-165, True, False) == "n too small"
    assert vs_best_mark(0.003, True, True) == "lower (p 0.003)"
    assert vs_best_mark(0.3, False, True) == "n.s. (p 0.3)"


def test_table_marks_against_the_best_row():
    table = pd.DataFrame({"task_model": ["m"] * 3, "scorer": ["a", "b", "c"], "q": ["q"] * 3,
                          "auc": [0.8, 0.7, 0.6]})
    pairs = pd.DataFrame({
        "task_model": ["m", "m"], "scorer_a": ["a", "a"], "q_a": ["q", "q"], "scorer_b": ["b", "c"],
        "q_b": ["q", "q"], "delong_p_holm_table": [0.01, 1e-40], "significant_auc_table": [True, pd.NA],
        "auc_test_valid": [True, False], "srcc_p_holm_table": [np.nan] * 2,
        "significant_srcc_table": [pd.NA] * 2, "srcc_test_valid": [False] * 2})
    marks = mark_vs_best(table, pairs)["auc_vs_best"].tolist()
    assert marks == ["best", "lower (p 0.01)", "n too small"]


@pytest.mark.parametrize(("rows", "side", "expected"), [
    ([Estimate("a", 0.55, 0.50, 0.60), Estimate("b", 0.58, 0.52, 0.64)], "below", HOLDS),
    ([Estimate("a", 0.55, 0.50, 0.60), Estimate("b", 0.64, 0.58, 0.70)], "below", INCONCLUSIVE),  # straddles
    ([Estimate("a", 0.55, 0.50, 0.60), Estimate("b", 0.75, 0.70, 0.80)], "below", FAILS),
    ([Estimate("a", 0.55, 0.50, 0.60, small_n=True)], "below", INCONCLUSIVE),  # small n never holds
    ([Estimate("a", 0.95, 0.70, 1.00, small_n=True)], "below", INCONCLUSIVE),  # nor fails
    ([Estimate("a", 0.55)], "below", INCONCLUSIVE),  # no interval: cannot decide
    ([Estimate("a", 0.80, 0.75, 0.85)], "at_least", HOLDS),
    ([Estimate("a", 0.72, 0.60, 0.84)], "at_least", INCONCLUSIVE),
    ([Estimate("a", 0.60, 0.55, 0.65)], "at_least", FAILS),
    ([], "below", NOT_TESTED),
])
def test_threshold_verdicts_use_the_interval_not_the_point(rows, side, expected):
    threshold = 0.65 if side == "below" else 0.7
    assert threshold_verdict(rows, threshold, side).verdict == expected


def test_a_verdict_states_its_evidence():
    v = threshold_verdict([Estimate("tv for m", 0.62, 0.55, 0.69, "100 test images")], 0.65, "below", "AUC")
    assert v.verdict == INCONCLUSIVE and "straddle" in v.reason
    assert v.evidence == "tv for m: AUC 0.620 [0.550, 0.690], n 100 test images"


def test_a_non_significant_difference_never_decides_a_comparison():
    ns = Comparison("m: q_p vs q_h", 0.826, 0.818, p=0.4, valid=True, n="5000 test images")
    assert comparison_verdict([ns]).verdict == INCONCLUSIVE
    assert "not significant" in comparison_verdict([ns]).reason
    # the point estimates favour the claim, but only a valid, significant test decides
    tiny = Comparison("m: q_p vs q_h", 0.9, 0.5, p=1e-30, valid=False)
    assert comparison_verdict([tiny]).verdict == INCONCLUSIVE
    sig = Comparison("m: q_p vs q_h", 0.85, 0.80, p=0.001, valid=True)
    assert comparison_verdict([sig]).verdict == HOLDS
    assert comparison_verdict([sig, ns]).verdict == INCONCLUSIVE
    against = Comparison("m2: q_p vs q_h", 0.78, 0.82, p=0.01, valid=True)
    assert comparison_verdict([sig, ns, against]).verdict == FAILS
    assert "p 0.01, significant" in comparison_verdict([against]).evidence


def test_mean_interval_is_the_t_interval():
    rng = np.random.default_rng(3)
    x = rng.normal(0.6, 0.1, 40)
    low, high = mean_interval(x.mean(), x.std(ddof=1), x.size)
    expected = stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    np.testing.assert_allclose([low, high], expected, rtol=1e-12)
    assert all(np.isnan(mean_interval(0.6, 0.1, 1)))


def test_hanley_mcneil_se_matches_the_spread_of_simulated_aucs():
    """Exponential scores, where Hanley-McNeil's Q1 and Q2 are exact: the SE of 3000 simulated AUCs."""
    rng = np.random.default_rng(0)
    n_pos, n_neg, scale = 40, 60, 2.0
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    aucs = [roc_auc_score(y, np.r_[rng.exponential(scale, n_pos), rng.exponential(1.0, n_neg)])
            for _ in range(3000)]
    theta = scale / (1 + scale)
    assert hanley_mcneil_se(theta, n_pos, n_neg) == pytest.approx(np.std(aucs), rel=0.05)
    low, high = hanley_mcneil_interval(np.array(aucs), n_pos, n_neg)  # each simulated sample's interval
    assert 0.93 < np.mean((low <= theta) & (theta <= high)) < 0.97  # covers the true AUC ~95% of the time
    assert np.isnan(hanley_mcneil_se(0.7, 0, 10))
