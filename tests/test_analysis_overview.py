"""The (Q, M) overview: the summary's numbers, sorted, and the grid the heatmap draws."""

from __future__ import annotations

import pandas as pd

from iqa_lib.analysis.overview import overview_matrix, pair_overview
from iqa_lib.analysis.runner import run_all
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.presentation.plots_overview import plot_overview_heatmap


def test_overview_keeps_the_summarys_numbers_best_first(tmp_path):
    scores = write_synthetic_scores(tmp_path / "scores", 40, corruptions=("fog", "contrast"),
                                    severities=(1, 2, 3), n_labels=4, nr_scorers=("tv", "brisque"),
                                    classifiers=("resnet34", "swin_b"), zero_shot=())
    run_all(scores, tmp_path / "a", n_bootstrap=20, analyses=("groupwise", "pointwise"), progress=False)
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    pointwise = pd.read_csv(tmp_path / "a" / "pointwise.csv")
    groupwise = pd.read_csv(tmp_path / "a" / "groupwise_correlations.csv")
    overview = pair_overview(summary, pointwise, groupwise)
    assert len(overview) == len(summary) == 2 * (2 + 2 * 3)  # M x (NR Q + classifier Q)
    assert overview["auc"].is_monotonic_decreasing
    for row in overview.itertuples():
        scorer, q = row.Q.rsplit(".", 1)
        want = summary[(summary.task_model == row.M) & (summary.scorer == scorer) & (summary.q == q)]
        assert row.auc == want["auc"].item() and row.srcc == want["srcc"].item()
        n = groupwise[(groupwise.task_model == row.M) & (groupwise.scorer == scorer)
                      & (groupwise.q == q) & (groupwise.stat == "srcc")]["n"].item()
        assert row.n_groups == n == 6 and row.n_test > 0
    grid = overview_matrix(overview)
    assert list(grid.columns) == ["resnet34", "swin_b"] and grid.index[0] == overview["Q"].iloc[0]
    assert grid.loc["tv.q", "swin_b"] == overview[(overview.Q == "tv.q") & (overview.M == "swin_b")]["auc"].item()
    ax = plot_overview_heatmap(grid)
    assert len(ax.texts) == grid.size
