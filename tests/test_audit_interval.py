"""The audit's prediction interval under shift and its in-reference check (iqa_lib.audit.interval)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from iqa_lib.audit.accuracy import (
    loco_validation,
    predict_accuracy,
    prediction_sentence,
    prediction_table,
    reference_outputs,
)
from iqa_lib.audit.interval import (
    QUANTILE_LEVELS,
    conformal_quantile,
    distance_threshold,
    min_families,
    prediction_interval,
    reference_groups,
    shift_fit,
)
from iqa_lib.audit.reference import read_reference, shipped_reference_files


@pytest.fixture(scope="module")
def lite0():
    (path,) = [p for p in shipped_reference_files() if p.name == "efficientnet_lite-lite0.parquet"]
    ref = read_reference(path)
    return ref, reference_outputs(ref)


def _group(data: pd.DataFrame, corruption: str, severity: int) -> pd.DataFrame:
    return data[(data["corruption"] == corruption) & (data["severity"] == severity)]


# --------------------------------------------------------------------------- conformal quantile


def test_conformal_quantile_is_numpys_with_the_finite_sample_correction():
    rng = np.random.default_rng(0)
    for m, level in ((15, 0.9), (40, 0.9), (100, 0.8), (9, 0.9), (57, 0.95)):
        s = np.abs(rng.normal(0, 0.03, m))
        want = np.quantile(s, math.ceil((m + 1) * level) / m, method="inverted_cdf")
        assert conformal_quantile(s, level) == pytest.approx(want, abs=0)
    assert conformal_quantile(np.arange(15.0), 0.9) == 14.0  # 15 families at 0.9: the largest
    assert conformal_quantile(np.arange(8.0), 0.9) == math.inf  # too few for the level
    assert min_families(0.9) == 9 and min_families(0.8) == 4


def test_shift_fit_takes_each_family_worst_residual():
    """The conformal score is a family's worst absolute residual over its severities."""
    rng = np.random.default_rng(1)
    rows = []
    for f in range(20):
        for s in range(1, 6):
            actual = rng.uniform(0.1, 0.9)
            rows.append({"method": "atc_ne", "corruption": f"c{f}", "severity": s, "n": 500,
                         "predicted": actual - rng.normal(0, 0.03), "actual": actual, "var_d": 0.2})
    table = pd.DataFrame(rows)
    fit = shift_fit(table, "atc_ne", 0.9)
    worst = (table["actual"] - table["predicted"]).abs().groupby(table["corruption"]).max().to_numpy()
    want = np.quantile(worst, math.ceil(21 * 0.9) / 20, method="inverted_cdf")
    assert fit.families == 20 and fit.quantile == pytest.approx(want, abs=0)
    binom = (table["actual"] * (1 - table["actual"])).sum()
    assert fit.kappa == pytest.approx(max(1.0, 0.2 * len(table) / binom))
    assert fit.n_reference == 500


# --------------------------------------------------------------------------- interval on the shipped reference


def test_interval_is_ordered_in_bounds_and_widens_as_n_shrinks(lite0):
    _, data = lite0
    fit = shift_fit(loco_validation(data, ["atc_ne"]), "atc_ne")
    assert fit.families == 15 and fit.quantile == pytest.approx(0.080, abs=1e-9)  # defocus_blur s4
    widths = []
    for n in (5000, 500, 400, 100, 30, 10):
        for value in (0.0, 0.03, 0.5, 0.97, 1.0):
            lo, hi = prediction_interval(fit, value, n)
            assert 0.0 <= lo <= value <= hi <= 1.0
        lo, hi = prediction_interval(fit, 0.5, n)
        widths.append(hi - lo)
    assert widths[0] == widths[1] == pytest.approx(2 * fit.quantile)  # never narrower than the reference's groups
    assert all(a < b for a, b in zip(widths[1:], widths[2:], strict=False))


def test_audit_keys_and_in_reference_for_reference_like_data(lite0):
    ref, data = lite0
    clean = data[data["corruption"] == "clean"].drop(columns="correct")
    pred = predict_accuracy(ref, clean, n_bootstrap=200)
    assert pred["method"] == "atc_ne" and pred["in_reference"] is True
    assert "held-out ImageNet-C corruptions at n = 500" in pred["in_reference_reason"]
    lo, hi = pred["prediction_interval"]
    assert 0 <= lo < pred["value"] < hi <= 1 and hi - lo == pytest.approx(0.16, abs=1e-9)
    assert pred["prediction_interval_level"] == 0.9 and "conformal" in pred["prediction_interval_how"]
    assert pred["bootstrap_interval_images"] == pred["ci95"]
    assert all("prediction_interval" in e for e in pred["estimates"].values())
    text = prediction_sentence("lite0", pred)
    assert "90% prediction interval" in text and "95% interval" in text and "In reference" in text
    table = prediction_table({"lite0": pred})
    stated = table[table["estimator"] == "ATC-NE (stated)"].iloc[0]
    assert (stated["90% PI low"], stated["90% PI high"]) == pytest.approx(tuple(pred["prediction_interval"]))
    assert table["in reference"].all()
    # a smaller subset of one reference group: still in reference, a wider interval
    fog = _group(data, "fog", 3).drop(columns="correct").sample(150, random_state=0)
    small = predict_accuracy(ref, fog, n_bootstrap=200)
    assert small["in_reference"] is True
    assert small["prediction_interval"][1] - small["prediction_interval"][0] > hi - lo


def test_far_outside_the_reference_is_flagged_and_the_interval_withheld(lite0):
    ref, data = lite0
    lowest = min(np.median(g) for _, g in data[data["corruption"] != "clean"].groupby(["corruption", "severity"])["q_p"])
    assert lowest > 0.06  # the least confident reference group (contrast 5) ...
    rng = np.random.default_rng(2)
    far = pd.DataFrame({"q_p": rng.uniform(0.01, 0.03, 300), "q_h": rng.uniform(6.6, 6.9, 300)})
    pred = predict_accuracy(ref, far, n_bootstrap=100)  # ... and these sit far below it
    assert pred["in_reference"] is False and pred["prediction_interval"] is None
    assert pred["prediction_interval_how"].startswith("not given (withheld)")
    assert all(e["prediction_interval"] is None for e in pred["estimates"].values())
    assert "outside what the reference covers" in pred["in_reference_reason"]
    assert pred["reference_distance"]["distance"] > pred["reference_distance"]["threshold"]
    text = prediction_sentence("lite0", pred)
    assert "Out of reference" in text and "No prediction interval is given" in text
    assert "prediction interval" not in text.split("Out of reference")[0]
    assert np.isnan(prediction_table({"lite0": pred})["90% PI low"]).all()
    # q_p alone (no q_h column): the check uses what both sides have
    only_qp = predict_accuracy(ref, far[["q_p"]], n_bootstrap=100)
    assert only_qp["method"] == "atc_mc"
    assert only_qp["in_reference"] is False and "q_p distribution" in only_qp["in_reference_reason"]


def test_held_out_threshold_is_each_familys_worst_nearest_distance(lite0):
    """At n >= a group's size the threshold is the conformal quantile over families of each
    family's largest distance to the nearest group of another family or clean, computed here
    directly from numpy percentiles."""
    _, data = lite0
    groups = reference_groups(data)
    keys = list(data.groupby(["corruption", "severity"], sort=True).groups)
    std = np.stack([data["q_p"].to_numpy(), -data["q_h"].to_numpy()])
    std = std / std.std(axis=1, keepdims=True)
    q = {}
    for c, s in keys:
        sel = ((data["corruption"] == c) & (data["severity"] == s)).to_numpy()
        q[(c, s)] = np.quantile(std[:, sel], QUANTILE_LEVELS, axis=1).T
    worst = {}
    for c, s in keys:
        if c == "clean":
            continue
        d = min(np.abs(q[(c, s)] - q[k]).mean() for k in keys if k[0] != c)
        worst[c] = max(worst.get(c, 0.0), d)
    threshold, families = distance_threshold(groups, 500)
    assert families == 15
    assert threshold == pytest.approx(conformal_quantile(list(worst.values()), 0.9), rel=1e-9)


def test_a_reference_with_too_few_corruptions_gives_no_interval(tmp_path):
    from iqa_lib.audit.reference import reference_from_scores, write_reference

    rng = np.random.default_rng(3)
    parts = []
    for c, s in [("clean", 0)] + [(c, s) for c in ("gaussian_noise", "fog", "blur") for s in (1, 3, 5)]:
        q_p = rng.beta(6 - s, 1 + s / 2, 100)
        parts.append(pd.DataFrame({"image_id": "x", "label": 0, "corruption": c, "severity": s,
                                   "correct": rng.random(100) < q_p, "q_p": q_p, "q_h": -3 * np.log(q_p)}))
    scores = pd.concat(parts, ignore_index=True)
    info = {"spec": "efficientnet_lite:lite0", "geometry": "resize_crop", "label_space": "imagenet"}
    ref = read_reference(write_reference(reference_from_scores(scores), info, tmp_path / "r.parquet"))
    pred = predict_accuracy(ref, scores.head(100).drop(columns="correct"), n_bootstrap=50)
    assert pred["value"] is not None and pred["prediction_interval"] is None
    assert pred["in_reference"] is None and "too few" in pred["in_reference_reason"]
    assert "needs 9" in pred["prediction_interval_how"]
    assert "No prediction interval is given" in prediction_sentence("m", pred)
