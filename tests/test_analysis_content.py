"""Per-label and per-image-ID cross-validation against a scikit-learn/statsmodels loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from iqa_lib.analysis import load_scores, per_image, per_label
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.stats.logistic import RIDGE
from iqa_lib.stats.splits import kfold_by_cluster, kfold_within_groups


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    d = write_synthetic_scores(
        tmp_path_factory.mktemp("cv") / "scores",
        60,
        corruptions=("fog", "snow", "pixelate", "contrast"),
        severities=(1, 2, 3, 4, 5),
        n_labels=6,
        nr_scorers=("tv",),
        classifiers=("resnet34",),
        zero_shot=(),
    )
    return load_scores(d)


def _fit(q, m):
    """Independent fit: statsmodels MLE, or for separable data sklearn's L2 on standardised q."""
    sd = q.std()
    z = (q - q.mean()) / sd
    separable = q[m == 0].max() <= q[m == 1].min() or q[m == 1].max() <= q[m == 0].min()
    if separable:
        clf = LogisticRegression(C=1 / RIDGE, tol=1e-12, max_iter=100_000).fit(z[:, None], m)
        a, b = clf.intercept_[0], clf.coef_[0, 0]
    else:
        a, b = sm.Logit(m, sm.add_constant(z)).fit(disp=0, method="newton", tol=1e-12).params
    return a - b * q.mean() / sd, b / sd


def _reference(q, m, groups, folds, k):
    """Per-group mean AUC and CE over folds with both classes on both sides."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in np.unique(groups):
            aucs, ces = [], []
            for f in range(k):
                tr = (groups == g) & (folds != f)
                te = (groups == g) & (folds == f)
                if len(set(m[tr])) < 2 or len(set(m[te])) < 2:
                    continue
                a, b = _fit(q[tr], m[tr])
                eta = a + b * q[te]
                aucs.append(roc_auc_score(m[te], eta))
                ces.append(log_loss(m[te], expit(eta), labels=[0, 1]))
            if aucs:
                out[g] = (np.mean(aucs), np.mean(ces))
    return out


def _check(summary, groups_table, ref):
    assert groups_table["n_folds_scored"].gt(0).sum() == len(ref)
    used = groups_table[groups_table["n_folds_scored"] > 0].set_index("group")
    auc = np.array([ref[g][0] for g in used.index])
    ce = np.array([ref[g][1] for g in used.index])
    np.testing.assert_allclose(used["auc"], auc, atol=1e-9)
    np.testing.assert_allclose(used["ce"], ce, atol=1e-5)
    assert summary["mean_auc"] == pytest.approx(auc.mean(), abs=1e-9)
    assert summary["sd_auc"] == pytest.approx(auc.std(ddof=1), abs=1e-9)
    assert summary["mean_ce"] == pytest.approx(ce.mean(), abs=1e-5)


@pytest.mark.parametrize("q", [("tv", "q"), ("resnet34", "q_l")])
def test_per_label_matches_an_independent_loop(scores, q):
    summary, groups = per_label(scores, [q], ["resnet34"], seed=2, return_groups=True)
    labels = np.unique(scores.label, return_inverse=True)[1]
    folds = kfold_by_cluster(labels, scores.image, 5, 2)
    for g in range(6):  # no image has variants on both sides of a fold
        sel = labels == g
        for img in np.unique(scores.image[sel]):
            assert len(set(folds[sel & (scores.image == img)])) == 1
    ref = _reference(scores.q[q].astype(float), scores.m["resnet34"], labels, folds, 5)
    _check(summary.iloc[0], groups, ref)
    assert summary.iloc[0]["n_groups"] == 6


@pytest.mark.parametrize("q", [("tv", "q"), ("resnet34", "q_p")])
def test_per_image_matches_an_independent_loop(scores, q):
    summary, groups = per_image(scores, [q], ["resnet34"], seed=4, return_groups=True)
    img = np.unique(scores.image, return_inverse=True)[1]
    m = scores.m["resnet34"]
    folds = kfold_within_groups(img, 5, 4, stratify=m)
    ref = _reference(scores.q[q].astype(float), m, img, folds, 5)
    s = summary.iloc[0]
    _check(s, groups, ref)
    if q[1] == "q_p":  # the ridge-fitted separable folds are part of the comparison
        assert s["n_folds_separable"] > 0
    # every fold is accounted for exactly once
    n_live = s["n_groups"] - s["n_groups_constant_m"]
    assert (
        s["n_folds_scored"]
        + s["n_folds_train_constant"]
        + s["n_folds_test_constant"]
        + s["n_folds_empty"]
    ) == 5 * n_live
    assert s["n_groups_constant_m"] == sum(len(set(m[img == g])) == 1 for g in range(60))


def test_constant_m_groups_are_counted_not_averaged_in(scores):
    always_right = scores.take(np.arange(scores.n_rows))
    m = always_right.m["resnet34"].copy()
    first = np.isin(always_right.image, np.unique(always_right.image)[:10])
    m[first] = 1
    always_right.m["resnet34"] = m
    s = per_image(always_right, [("tv", "q")], ["resnet34"]).iloc[0]
    assert s["n_groups_constant_m"] >= 10
    assert s["n_groups_scored"] <= 50
