"""Point-wise analysis against statsmodels Logit and scikit-learn metrics."""

from __future__ import annotations

import pytest
import statsmodels.api as sm
from scipy.special import expit
from sklearn.metrics import log_loss, roc_auc_score

from iqa_lib.analysis import load_scores, pointwise
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.stats.splits import group_test_mask


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    d = write_synthetic_scores(
        tmp_path_factory.mktemp("pw") / "scores",
        150,
        corruptions=("fog", "snow", "pixelate"),
        severities=(1, 3, 5),
        n_labels=10,
        nr_scorers=("tv",),
        classifiers=("resnet34", "swin_b"),
        zero_shot=(),
    )
    return load_scores(d)


def test_pointwise_equals_an_independent_statsmodels_and_sklearn_computation(scores):
    table = pointwise(scores, n_bootstrap=200, seed=3)
    assert len(table) == 7 * 2  # (tv + 2 x 3 task Qs) x 2 task models
    test = group_test_mask(scores.image, 0.2, seed=3)
    assert not set(scores.image[test]) & set(scores.image[~test])
    assert (table["n_test_images"] == 30).all()
    for row in table.itertuples():
        q = scores.q[(row.scorer, row.q)].astype(float)
        m = scores.m[row.task_model]
        a, b = (
            sm.Logit(m[~test], sm.add_constant(q[~test]))
            .fit(disp=0, method="newton", tol=1e-12)
            .params
        )
        p = expit(a + b * q[test])
        assert row.intercept == pytest.approx(a, abs=1e-6)
        assert row.slope == pytest.approx(b, abs=1e-6)
        assert row.auc == pytest.approx(roc_auc_score(m[test], p), abs=1e-9)
        assert row.auc_raw == pytest.approx(roc_auc_score(m[test], q[test]), abs=1e-12)
        assert row.ce == pytest.approx(log_loss(m[test], p), abs=1e-9)
        assert row.auc_ci_low <= row.auc <= row.auc_ci_high
        assert row.ce_ci_low <= row.ce <= row.ce_ci_high
        assert row.n_boot_valid == 200


def test_entropy_has_a_negative_slope_and_auc_is_reported_both_ways(scores):
    row = pointwise(scores, [("resnet34", "q_h")], ["resnet34"], n_bootstrap=0).iloc[0]
    assert row.slope < 0
    assert row.auc == pytest.approx(1 - row.auc_raw, abs=1e-12)
    assert row.auc > 0.5 > row.auc_raw


def test_pointwise_is_seeded(scores):
    a = pointwise(scores, [("tv", "q")], ["swin_b"], n_bootstrap=50, seed=1)
    b = pointwise(scores, [("tv", "q")], ["swin_b"], n_bootstrap=50, seed=1)
    c = pointwise(scores, [("tv", "q")], ["swin_b"], n_bootstrap=50, seed=2)
    assert a.equals(b)
    assert not a.equals(c)


def test_unknown_names_are_clear_errors(scores):
    with pytest.raises(KeyError, match="unknown Q"):
        pointwise(scores, [("tv", "q_l")])
    with pytest.raises(KeyError, match="unknown task model"):
        pointwise(scores, None, ["tv"])
