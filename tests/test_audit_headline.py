"""The audit's first screen (summary.json's headline and caveat) and whether a closest group is informative."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from iqa_lib.audit.headline import CAVEAT, NO_TASK_MODEL, headline, headline_blocks
from iqa_lib.audit.reference import (
    read_reference,
    reference_from_scores,
    scorer_identity,
    write_reference,
)
from iqa_lib.audit.summary import (
    CLOSEST_MIN_HIT_RATE,
    annotate_closest,
    assess_closest,
    closest_validation,
    severities_differ,
    severity_level,
    summarise_scorer,
)
from iqa_lib.presentation.plots_audit import HEADLINE_STYLE, headline_html

NEW_KEYS = ("prediction_interval", "prediction_interval_level", "prediction_interval_how", "in_reference",
            "in_reference_reason", "bootstrap_interval_images")
INSIDE = ("The q_p and -q_h distribution of these 40 images is 0.08 from the nearest reference group "
          "(shot_noise, severity 3): inside what the reference covers.")
OUTSIDE = ("The q_p and -q_h distribution of these 40 images is 0.61 from the nearest reference group "
           "(contrast, severity 5): outside what the reference covers, where the validated error says nothing.")


def _measured(value: float, n: int = 40) -> dict:
    return {"value": value, "n": n, "ci95": [value - 0.14, value + 0.14]}


def _prediction(actual: dict | None = None, **changes) -> dict:
    pred = {
        "value": 0.42, "ci95": [0.28, 0.57], "method": "atc_ne", "method_name": "ATC-NE", "n": 40,
        "validation": {"mean_abs_error_pts": 2.3, "max_abs_error_pts": 8.0, "bias_pts": 0.0},
        "actual": actual, "note": None,
        "prediction_interval": [0.27, 0.58], "prediction_interval_level": 0.9,
        "prediction_interval_how": "90% split-conformal over the reference's 15 held-out corruptions",
        "in_reference": True, "in_reference_reason": INSIDE, "bootstrap_interval_images": [0.28, 0.57],
    }
    return pred | changes


def _summary(pred: dict | None, accuracy: dict | None = None, closest: str = "severity 3") -> dict:
    return {
        "closest_severity_from_confidence": {"lite0": severity_level(closest)},
        "scorers": {
            "lite0": {"kind": "classifier", "accuracy": accuracy, "predicted_accuracy": pred, "variables": {
                "q_p": {"reference": {"closest": closest}, "closest_informative": True}}},
            "tv": {"kind": "nr_iqa", "accuracy": None, "predicted_accuracy": None, "variables": {
                "q": {"reference": {"closest": "clean"}, "closest_informative": False}}},
        },
    }


def test_labelled_set_inside_the_prediction_interval():
    acc = _measured(0.475)
    lines = headline(_summary(_prediction(acc), acc))
    assert lines[0].startswith("lite0: predicted top-1 accuracy 42% (ATC-NE)")
    assert "90% prediction interval 27-58%" in lines[0] and "covers the error of a shift" in lines[0]
    assert "95% bootstrap interval 28-57% over these 40 images" in lines[0] and "resampling the images only" in lines[0]
    assert lines[1].startswith("lite0: these images are like its reference") and "the q_p and -q_h" in lines[1]
    assert lines[2] == "lite0: measured on these labelled images: 48% (95% CI 34-62%, n = 40), inside the prediction interval."
    assert lines[3] == "lite0: by its confidence (q_p) these images are nearest ImageNet-C severity 3."
    assert not any("OUTSIDE" in line or "NOT" in line for line in lines)
    assert not any(warn for _, warn in headline_blocks(_summary(_prediction(acc), acc))["lite0"])


def test_measured_accuracy_outside_the_prediction_interval_is_flagged():
    acc = _measured(0.10)
    summary = _summary(_prediction(acc), acc)
    (measured,) = [line for line in headline(summary) if "measured" in line]
    assert "10%" in measured and "OUTSIDE the prediction interval 27-58%" in measured
    assert "trust the measurement" in measured
    flagged = [text for text, warn in headline_blocks(summary)["lite0"] if warn]
    assert len(flagged) == 1 and "OUTSIDE" in flagged[0]
    html = headline_html(headline_blocks(summary), CAVEAT)
    assert HEADLINE_STYLE["warn_box"] in html and HEADLINE_STYLE["warn"] in html and "Caveat." in html


def test_out_of_reference_says_so_first():
    acc = _measured(0.30)
    pred = _prediction(acc, in_reference=False, in_reference_reason=OUTSIDE, prediction_interval=None,
                       prediction_interval_how="not given (withheld): outside. When given: conformal")
    own = {"kind": "classifier", "accuracy": _measured(0.9), "predicted_accuracy": _prediction(_measured(0.9)),
           "variables": {}}
    summary = _summary(pred, acc)
    summary["scorers"] = {"first": own} | summary["scorers"]  # the model outside its reference still leads
    lines = headline(summary)
    assert lines[0].startswith("lite0: these images are NOT like its reference")
    assert "outside what the reference covers" in lines[0] and "a guess" in lines[0]
    assert "no prediction interval: withheld" in lines[1] and "95% bootstrap interval 28-57%" in lines[1]
    assert not any("inside the prediction interval" in line for line in lines if line.startswith("lite0"))
    assert any(line.startswith("first: predicted") for line in lines)
    assert headline_blocks(summary)["lite0"][0][1] is True  # a warning
    html = headline_html({"a<b": [("x < y", True)]}, CAVEAT)  # text is escaped
    assert "a&lt;b" in html and "X &lt; y" in html


def test_unlabelled_set_has_no_measured_accuracy():
    lines = headline(_summary(_prediction(None), None))
    assert not any("measured on" in line for line in lines)
    assert "lite0: no labels this model's correctness is defined on: accuracy is not measured, only predicted." in lines


def test_old_summary_without_the_new_keys():
    acc = _measured(0.475)
    old = {k: v for k, v in _prediction(acc).items() if k not in NEW_KEYS}
    summary = _summary(old, acc)
    del summary["closest_severity_from_confidence"]  # older summaries had none: read from q_p
    lines = headline(summary)
    assert "no prediction interval in this summary" in lines[0] and "rerun" in lines[0]
    assert "8.0 at worst" in lines[0] and "95% bootstrap interval 28-57%" in lines[0]  # ci95 stands in
    assert not any("its reference" in line for line in lines)
    assert lines[1] == "lite0: measured on these labelled images: 48% (95% CI 34-62%, n = 40)."
    assert lines[2].endswith("nearest ImageNet-C severity 3.")


def test_no_prediction_and_no_task_model():
    pred = {"value": None, "note": "no matching reference to fit the estimators on: own classes", "actual": None}
    lines = headline(_summary(pred, _measured(0.5, 12), closest="clean") | {"closest_severity_from_confidence": {}})
    assert lines[0] == "lite0: no accuracy prediction: no matching reference to fit the estimators on: own classes"
    assert lines[1].startswith("lite0: measured on these labelled images: 50%")
    summary = _summary(None)
    del summary["scorers"]["lite0"]
    assert headline(summary) == [NO_TASK_MODEL]
    html = headline_html(headline_blocks(summary), CAVEAT, empty=NO_TASK_MODEL)
    assert "No task model" in html and "http" not in html


# --- closest_informative ---------------------------------------------------------------------


def _reference(tmp_path, shift_of, n=200, seed=0):
    """A no-reference metric's reference: clean around 0; corruption c at severity s around shift_of(c, s)."""
    rng = np.random.default_rng(seed)
    rows = [("clean", 0, v) for v in rng.normal(0, 1, n)]
    for c in ("gaussian_noise", "shot_noise", "defocus_blur", "glass_blur"):
        for s in range(1, 6):
            rows += [(c, s, v) for v in rng.normal(shift_of(c, s), 1, n)]
    scores = pd.DataFrame(rows, columns=["corruption", "severity", "q"]).assign(image_id="x", label=0)
    info = scorer_identity("tv", {}, "resize_crop") | {"label_space": "none", "made_from": "synthetic"}
    return read_reference(write_reference(reference_from_scores(scores), info, tmp_path / f"ref{seed}.parquet"))


def test_levels_and_what_counts_as_different():
    assert [severity_level(g) for g in ("clean", "severity 1", "severity 5", None)] == [0, 1, 5, None]
    assert severities_differ(0, 1) and severities_differ(2, 4) and not severities_differ(3, 4)
    assert not severities_differ(0, 0)


def test_nearly_equal_distances_are_not_informative(tmp_path):
    # a metric that does not move with corruption: every reference group is the same distribution
    ref = _reference(tmp_path, lambda c, s: 0.0)
    validation = closest_validation(ref, "q")
    assert validation["groups"] == 20 and validation["corruptions"] == 4
    scores = pd.DataFrame({"q": np.random.default_rng(9).normal(0.5, 1, 1000), "label": -1})
    item = summarise_scorer("tv", scores, {"spec": "tv", "kind": "nr_iqa"}, {"q": (ref, "")})["variables"]["q"]
    d = list(item["reference"]["distances"].values())
    assert max(d) < 1.25 * min(d)  # all nearly equal
    assert item["closest_informative"] is False and "not informative" in item["closest_note"]
    # the same distances judged by the tie rule alone
    informative, note = assess_closest(item["reference"]["distances"], None)
    assert informative is False and "cannot tell these apart" in note
    assert assess_closest({"clean": 1.0, "severity 1": 1.05, "severity 2": 1.1, "severity 3": 1.1,
                           "severity 4": 1.15, "severity 5": 1.2}, None)[0] is False


def test_a_metric_that_orders_severities_is_informative_one_that_does_not_is_not(tmp_path):
    monotone = _reference(tmp_path, lambda c, s: float(s), seed=1)
    assert closest_validation(monotone, "q")["within_one_severity"] >= CLOSEST_MIN_HIT_RATE
    scores = pd.DataFrame({"q": np.random.default_rng(2).normal(3.0, 1, 80), "label": -1})
    item = summarise_scorer("m", scores, {"spec": "m", "kind": "nr_iqa"}, {"q": (monotone, "")})["variables"]["q"]
    assert item["reference"]["closest"] == "severity 3" and item["closest_informative"] is True
    assert "nearest ImageNet-C severity 3" in item["closest_note"]
    # noise raises it, blur lowers it (as TV): pooled severities do not order a shift
    both_ways = _reference(tmp_path, lambda c, s: float(s) if "noise" in c else -float(s), seed=3)
    assert closest_validation(both_ways, "q")["within_one_severity"] < CLOSEST_MIN_HIT_RATE
    item = summarise_scorer("m", scores, {"spec": "m", "kind": "nr_iqa"}, {"q": (both_ways, "")})["variables"]["q"]
    assert item["closest_informative"] is False and "held-out" in item["closest_note"]


def test_an_nr_iqa_closest_that_contradicts_the_confidence():
    def scorers(nr_closest: str) -> dict:
        return {
            "lite0": {"kind": "classifier", "variables": {"q_p": {
                "reference": {"closest": "severity 4"}, "closest_informative": True, "closest_note": "ok"}}},
            "tv": {"kind": "nr_iqa", "variables": {"q": {
                "reference": {"closest": nr_closest}, "closest_informative": True, "closest_note": "ok"}}},
        }

    s = scorers("clean")
    assert annotate_closest(s) == {"lite0": 4}
    item = s["tv"]["variables"]["q"]
    assert item["closest_informative"] is False
    assert "contradicts the task model's confidence" in item["closest_note"]
    assert "clean ImageNet" in item["closest_note"] and "lite0's q_p puts these images at ImageNet-C severity 4" in item["closest_note"]
    assert s["lite0"]["variables"]["q_p"]["closest_informative"] is True  # the confidence is not judged by it
    s = scorers("severity 3")  # one severity apart: no contradiction
    annotate_closest(s)
    assert s["tv"]["variables"]["q"]["closest_informative"] is True
    s = scorers("severity 2")
    annotate_closest(s)
    assert s["tv"]["variables"]["q"]["closest_informative"] is False
    # a confidence that is itself not informative contradicts nothing
    s = scorers("clean")
    s["lite0"]["variables"]["q_p"]["closest_informative"] = False
    annotate_closest(s)
    assert s["tv"]["variables"]["q"]["closest_informative"] is True


def test_headline_does_not_change_the_summary():
    acc = _measured(0.475)
    summary = _summary(_prediction(acc), acc)
    before = copy.deepcopy(summary)
    headline(summary)
    headline_blocks(summary)
    assert summary == before


def test_audit_help_says_measured_and_predicted(capsys):
    from iqa_lib.cli import main

    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a labelled dataset gets its measured accuracy" in text
    assert "an unlabelled one gets a prediction" in text
    assert "validated on ImageNet-C-like shifts of ImageNet classes only" in text
