"""run_all and the ``iqa-kit analyze`` command: every table from a folder of score files."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from iqa_lib.analysis import run_all
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.cli import main
from iqa_lib.commands import analyze


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory):
    return write_synthetic_scores(
        tmp_path_factory.mktemp("run") / "scores",
        60,
        corruptions=("fog", "snow", "contrast"),
        severities=(1, 2, 3),
        n_labels=5,
        nr_scorers=("tv",),
        classifiers=("resnet34", "swin_b", "convnext_base"),
        zero_shot=("zsclip",),
    )


def test_run_all_writes_every_table(scores_dir, tmp_path):
    tables = run_all(
        scores_dir,
        tmp_path / "out",
        n_bootstrap=50,
        progress=False,
        mixture_fractions=[0.05, 0.1],
        log=lambda m: None,
    )
    names = {p.stem for p in (tmp_path / "out").glob("*.csv")}
    assert (
        names
        == set(tables)
        == {
            "groupwise_means",
            "groupwise_correlations",
            "pointwise",
            "summary",
            "pairs",
            "paired_tests",
            "per_label",
            "per_image",
            "mixtures_auc",
            "mixtures_summary",
            "mixtures_quantiles",
            "mixtures_histogram",
        }
    )
    pairs = pd.read_csv(tmp_path / "out" / "pairs.csv")
    assert len(pairs) == 3 * 3 * 3  # q_p/q_h/q_l x every ordered pair of 3 classifiers
    assert pairs["same_model"].sum() == 9
    assert not set(pairs["q_model"]) & {"zsclip", "tv"}
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(summary) == (1 + 3 * 4) * 4
    assert {"auc", "auc_raw", "ce", "srcc", "srcc_ci_low", "krcc", "plcc"} <= set(summary)
    params = json.loads((tmp_path / "out" / "analysis_params.json").read_text())
    assert params["n_bootstrap"] == 50 and params["kinds"]["zsclip"] == "zero_shot"


def _parse(argv):
    parser = argparse.ArgumentParser()
    analyze.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_analyze_command(scores_dir, tmp_path, capsys):
    args = _parse(
        [
            "analyze",
            "--scores",
            str(scores_dir),
            "--out",
            str(tmp_path / "o"),
            "--n-bootstrap",
            "20",
            "--task-models",
            "resnet34",
            "--analyses",
            "pointwise,mixtures",
            "--mixture-fractions",
            "1%,0.02",
            "--no-progress",
        ]
    )
    assert args.mixture_fractions == [0.01, 0.02]
    assert args.func(args) == 0
    point = pd.read_csv(tmp_path / "o" / "pointwise.csv")
    assert set(point["task_model"]) == {"resnet34"}
    assert set(pd.read_csv(tmp_path / "o" / "mixtures_auc.csv")["p_c"]) == {0.01, 0.02}


def test_analyze_command_rejects_bad_fractions(capsys):
    with pytest.raises(SystemExit):
        _parse(["analyze", "--scores", "s", "--out", "o", "--mixture-fractions", "5"])
    assert "not in [0, 1]" in capsys.readouterr().err


def test_analyze_command_reports_bad_input(tmp_path, capsys):
    assert main(["analyze", "--scores", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_zero_shot_override_leaves_a_file_out_of_the_pairs(scores_dir, tmp_path):
    tables = run_all(
        scores_dir,
        tmp_path / "z",
        n_bootstrap=10,
        progress=False,
        zero_shot=["resnet34"],
        analyses=("groupwise", "pointwise"),
        log=lambda m: None,
    )
    assert set(tables["pairs"]["q_model"]) == {"swin_b", "convnext_base"}
    assert len(tables["pairs"]) == 2 * 2 * 3
    with pytest.raises(ValueError, match="not a task score file"):
        run_all(scores_dir, tmp_path / "z", zero_shot=["tv"], log=lambda m: None)


def test_clean_only_scores_skip_what_they_cannot_support(tmp_path):
    """Your own images, no ImageNet-C: no group-wise correlations, no mixtures, the rest runs."""
    scores = write_synthetic_scores(
        tmp_path / "scores", 80, corruptions=(), n_labels=4, nr_scorers=("tv",),
        classifiers=("resnet34",), zero_shot=(),
    )
    tables = run_all(scores, tmp_path / "out", n_bootstrap=20, progress=False, log=lambda m: None)
    assert "groupwise_correlations" not in tables
    assert not any(name.startswith("mixtures") for name in tables)
    summary = tables["summary"]
    assert summary["auc"].notna().all() and summary["srcc"].isna().all()
    assert {"per_label", "per_image", "pairs", "groupwise_means"} <= set(tables)
    skipped = json.loads((tmp_path / "out" / "analysis_params.json").read_text())["skipped"]
    assert set(skipped) == {"groupwise", "mixtures"}
    assert "at least 3" in skipped["groupwise"] and "have 0" in skipped["groupwise"]


def test_two_groups_skip_only_groupwise(tmp_path):
    scores = write_synthetic_scores(
        tmp_path / "scores", 40, corruptions=("fog",), severities=(1, 2), n_labels=4,
        nr_scorers=("tv",), classifiers=("resnet34",), zero_shot=(),
    )
    tables = run_all(scores, tmp_path / "out", n_bootstrap=20, mixture_fractions=[0.1],
                     progress=False, log=lambda m: None)
    assert "groupwise_correlations" not in tables and "mixtures_auc" in tables
