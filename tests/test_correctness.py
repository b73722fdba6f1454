"""``iqa-kit correctness``: accuracy against pandas, CE/mCE by hand, ECE against a loop, the command."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from iqa_lib.analysis.correctness import (  # noqa: E402
    accuracy_table,
    alexnet_from_table,
    calibration_table,
    compute_correctness,
    correctness_from_frame,
    expected_calibration_error,
    load_alexnet_errors,
    load_task_frame,
    reliability_bins,
)
from iqa_lib.analysis.synthetic import write_synthetic_scores  # noqa: E402
from iqa_lib.cli import main  # noqa: E402
from iqa_lib.corruptions import COMMON_CORRUPTIONS  # noqa: E402

CORRUPTIONS = ("fog", "gaussian_noise", "my_blur")

# ALEXNET_ERR of google-research/augmix imagenet.py ("Raw AlexNet errors taken from
# https://github.com/hendrycks/robustness"), in COMMON_CORRUPTIONS order
PUBLISHED_AVERAGES = (
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
    0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500,
)


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory):
    return write_synthetic_scores(
        tmp_path_factory.mktemp("c") / "scores", 24, corruptions=CORRUPTIONS,
        n_labels=5, nr_scorers=("tv",), classifiers=("resnet34",), zero_shot=(),
    )


def _ece_loop(conf: np.ndarray, hit: np.ndarray, n_bins: int = 15) -> float:
    """ECE written independently: a loop over right-closed bins (lo, hi], 0 in the first."""
    edges = np.linspace(0, 1, n_bins + 1)
    total, n = 0.0, len(conf)
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if inside.sum():
            total += inside.sum() / n * abs(hit[inside].mean() - conf[inside].mean())
    return total


def test_shipped_alexnet_errors_match_the_published_averages():
    alex = load_alexnet_errors()
    per = alex.per_severity
    assert len(per) == 75 and set(per["corruption"]) == set(COMMON_CORRUPTIONS)
    assert sorted(set(per["severity"])) == [1, 2, 3, 4, 5]
    means = per.groupby("corruption")["error"].mean()
    for name, published in zip(COMMON_CORRUPTIONS, PUBLISHED_AVERAGES, strict=True):
        assert means[name] == pytest.approx(published, abs=5e-7), name
    assert alex.clean == pytest.approx(1 - 0.56522)


def test_accuracy_matches_pandas_groupby(scores_dir):
    table = compute_correctness(scores_dir, "resnet34").accuracy
    raw = pd.read_parquet(scores_dir / "resnet34.parquet")
    raw["corruption"] = raw["corruption"].astype(str)
    g = raw.groupby(["corruption", "severity"])["correct"]
    expected = pd.DataFrame({"n_pd": g.size(), "acc_pd": g.mean()}).reset_index()
    merged = table.merge(expected, on=["corruption", "severity"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all() and len(table) == 1 + 3 * 5
    assert (merged["n"] == merged["n_pd"]).all() and (merged["n"] == 24).all()
    np.testing.assert_allclose(merged["accuracy"], merged["acc_pd"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged["error"], 1 - merged["acc_pd"], rtol=0, atol=1e-12)
    # clean first, then ImageNet-C order, then the others
    assert list(dict.fromkeys(table["corruption"])) == ["clean", "gaussian_noise", "fog", "my_blur"]


def _frame(groups: dict[tuple[str, int], tuple[int, int]]) -> pd.DataFrame:
    """(corruption, severity) -> (n, n_wrong): rows with the wrong ones first; q_p unused."""
    rows = []
    for (c, s), (n, wrong) in groups.items():
        rows += [{"corruption": c, "severity": s, "correct": int(i >= wrong), "q_p": 0.5} for i in range(n)]
    return pd.DataFrame(rows)


def test_ce_and_mce_against_a_hand_worked_example():
    # model: clean error 2/10 = 0.2; per-severity errors (each of 5 images) below
    groups = {("clean", 0): (10, 2)}
    for s, wrong in zip(range(1, 6), (1, 2, 2, 3, 4), strict=True):  # 0.2 0.4 0.4 0.6 0.8: sum 2.4
        groups[("gaussian_noise", s)] = (5, wrong)
    for s, wrong in zip(range(1, 6), (0, 1, 1, 2, 3), strict=True):  # 0 0.2 0.2 0.4 0.6: sum 1.4
        groups[("fog", s)] = (5, wrong)
    groups[("shot_noise", 1)] = (5, 1)  # two severities only: unnormalised
    groups[("shot_noise", 2)] = (5, 3)
    groups[("speckle_noise", 1)] = (4, 1)  # not one of the 15
    alex = alexnet_from_table(pd.DataFrame(
        [("gaussian_noise", s, e) for s, e in zip(range(1, 6), (0.5, 0.6, 0.7, 0.8, 0.9), strict=True)]
        + [("fog", s, e) for s, e in zip(range(1, 6), (0.3, 0.4, 0.5, 0.6, 0.7), strict=True)]
        + [("shot_noise", s, 0.9) for s in range(1, 6)],
        columns=["corruption", "severity", "error"]), clean=0.4)
    result = correctness_from_frame(_frame(groups), "toy", alex)
    ce = result.ce.set_index("corruption")
    # CE = sum of errors / AlexNet's sum: 2.4 / 3.5 and 1.4 / 2.5
    assert ce.loc["gaussian_noise", "ce"] == pytest.approx(2.4 / 3.5)
    assert ce.loc["fog", "ce"] == pytest.approx(1.4 / 2.5)
    # relative CE = (2.4 - 5 * 0.2) / (3.5 - 5 * 0.4) and (1.4 - 1.0) / (2.5 - 2.0)
    assert ce.loc["gaussian_noise", "relative_ce"] == pytest.approx(1.4 / 1.5)
    assert ce.loc["fog", "relative_ce"] == pytest.approx(0.8)
    assert ce.loc["gaussian_noise", "error_mean"] == pytest.approx(2.4 / 5)
    assert ce.loc["shot_noise", "error_mean"] == pytest.approx((0.2 + 0.6) / 2)
    for name in ("shot_noise", "speckle_noise"):
        assert np.isnan(ce.loc[name, "ce"]) and np.isnan(ce.loc[name, "relative_ce"])
        assert "unnormalised only" in ce.loc[name, "note"]
    s = result.summary
    assert s["mce"] == {"value": pytest.approx((2.4 / 3.5 + 1.4 / 2.5) / 2), "n": 2}
    assert s["relative_mce"] == {"value": pytest.approx((1.4 / 1.5 + 0.8) / 2), "n": 2}
    assert s["clean_top1"] == {"value": pytest.approx(0.8), "n": 10}
    assert any("mCE over 2 of the 15" in n for n in result.notes)


def test_relative_ce_left_out_without_clean_images():
    groups = {("fog", s): (4, 1) for s in range(1, 6)}
    alex = alexnet_from_table(pd.DataFrame(
        [("fog", s, 0.5) for s in range(1, 6)], columns=["corruption", "severity", "error"]), clean=0.4)
    result = correctness_from_frame(_frame(groups), "toy", alex)
    row = result.ce.iloc[0]
    assert row["ce"] == pytest.approx(1.25 / 2.5) and np.isnan(row["relative_ce"])
    assert "no clean images" in row["note"]
    assert result.summary["clean_top1"] == {"value": None, "n": 0}
    assert result.summary["ece_clean"] == {"value": None, "n": 0}


def test_ece_against_an_independent_loop(scores_dir):
    rng = np.random.default_rng(1)
    conf = np.concatenate([rng.uniform(0, 1, 500), np.arange(16) / 15])  # bin edges included
    hit = (rng.uniform(0, 1, conf.size) < conf ** 0.7).astype(float)
    assert expected_calibration_error(conf, hit) == pytest.approx(_ece_loop(conf, hit), abs=1e-12)
    bins = reliability_bins(conf, hit)
    assert bins["n"].sum() == conf.size and bins.loc[1, "n"] == ((conf > 1 / 15) & (conf <= 2 / 15)).sum()
    # per subset of a score file
    frame = load_task_frame(scores_dir, "resnet34")
    table = calibration_table(frame).set_index(["subset", "severity"])
    clean = (frame["corruption"] == "clean").to_numpy()
    q, m = frame["q_p"].to_numpy(), frame["correct"].to_numpy(float)
    assert table.loc[("clean", 0), "ece"] == pytest.approx(_ece_loop(q[clean], m[clean]), abs=1e-12)
    assert table.loc[("corrupted", -1), "ece"] == pytest.approx(_ece_loop(q[~clean], m[~clean]), abs=1e-12)
    sev3 = ~clean & (frame["severity"].to_numpy() == 3)
    assert table.loc[("severity", 3), "ece"] == pytest.approx(_ece_loop(q[sev3], m[sev3]), abs=1e-12)
    assert table.loc[("severity", 3), "n"] == 24 * 3


def test_command_end_to_end(scores_dir, tmp_path, capsys):
    out = tmp_path / "correctness" / "resnet34"
    assert main(["correctness", "--scores", str(scores_dir), "--model", "resnet34", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resnet34: top-1 clean" in printed and "mCE" in printed
    for name in ("accuracy.csv", "ce.csv", "calibration.csv", "reliability.csv", "severity.csv",
                 "summary.json", "reliability.png", "reliability.pdf", "accuracy_vs_severity.png",
                 "ce.png", "ce.pdf"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["clean_top1", "corrupted_top1", "mce", "relative_mce", "ece_clean", "ece_corrupted"]
    expected = compute_correctness(scores_dir, "resnet34")
    assert summary["clean_top1"]["value"] == pytest.approx(expected.summary["clean_top1"]["value"])
    assert summary["mce"]["n"] == 2  # fog and gaussian_noise; my_blur is not ImageNet-C
    accuracy = pd.read_csv(out / "accuracy.csv")
    pd.testing.assert_frame_equal(accuracy, accuracy_table(load_task_frame(scores_dir, "resnet34")),
                                  check_dtype=False)
    assert not list(out.glob(".*.tmp-*"))


def test_file_without_correct_is_a_clear_error(tmp_path, capsys):
    table = pa.table({
        "image_id": ["a", "b"], "corruption": ["clean", "clean"], "severity": [0, 0], "label": [-1, -1],
        "pred": [1, 2], "q_p": [0.4, 0.9], "q_h": [1.0, 0.2], "q_l": [3.0, 5.0],
    })
    pq.write_table(table, tmp_path / "mine.parquet")
    with pytest.raises(ValueError, match=r"mine\.parquet: no column 'correct'"):
        compute_correctness(tmp_path, "mine")
    assert main(["correctness", "--scores", str(tmp_path), "--model", "mine", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "mine.parquet" in err and "'correct'" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(FileNotFoundError, match="no score file for"):
        compute_correctness(tmp_path, "absent")


def test_nr_iqa_file_is_refused(scores_dir):
    with pytest.raises(ValueError, match=r"tv\.parquet: a no-reference IQA score file"):
        compute_correctness(scores_dir, "tv")
