"""Group-wise analysis against pandas group means and scipy correlations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from iqa_lib.analysis import group_means, groupwise, load_scores
from iqa_lib.analysis.synthetic import write_synthetic_scores


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory):
    return write_synthetic_scores(
        tmp_path_factory.mktemp("gw") / "scores",
        40,
        corruptions=("fog", "snow", "pixelate", "contrast"),
        severities=(1, 2, 3, 4, 5),
        n_labels=4,
        nr_scorers=("tv", "brisque"),
        classifiers=("resnet34",),
        zero_shot=(),
    )


def _independent_means(scores_dir):
    q = pd.read_parquet(scores_dir / "tv.parquet")
    m = pd.read_parquet(scores_dir / "resnet34.parquet")
    keys = ["image_id", "corruption", "severity"]
    # float64 before grouping: pandas would cast a float32 column's group means back
    df = q.merge(m, on=keys).astype({"corruption": str, "q": np.float64})
    df = df[df["corruption"] != "clean"]
    return df.groupby(["corruption", "severity"]).agg(
        q=("q", "mean"), acc=("correct", "mean"), n=("q", "size")
    )


def test_group_means_equal_a_pandas_groupby(scores_dir):
    s = load_scores(scores_dir)
    means = group_means(s).astype({"corruption": str})
    want = _independent_means(scores_dir)
    assert len(want) == 20
    got_q = means[(means.measure == "q") & (means.source == "tv")].set_index(
        ["corruption", "severity"]
    )
    got_a = means[(means.measure == "accuracy") & (means.source == "resnet34")].set_index(
        ["corruption", "severity"]
    )
    np.testing.assert_allclose(got_q.loc[want.index, "mean"], want["q"], atol=1e-12)
    np.testing.assert_allclose(got_a.loc[want.index, "mean"], want["acc"], atol=1e-12)
    assert (got_q.loc[want.index, "n"] == want["n"]).all()


def test_correlations_equal_scipy_on_the_group_means(scores_dir):
    s = load_scores(scores_dir)
    table = groupwise(s, n_bootstrap=300, seed=1)
    assert len(table) == 5 * 3  # Q: tv, brisque, resnet34 q_p/q_h/q_l; M: resnet34; 3 stats
    want = _independent_means(scores_dir)
    sel = table[(table.scorer == "tv") & (table.task_model == "resnet34")].set_index("stat")
    for stat, func in (
        ("krcc", stats.kendalltau),
        ("srcc", stats.spearmanr),
        ("plcc", stats.pearsonr),
    ):
        r, p = func(want["q"], want["acc"])
        assert sel.loc[stat, "r"] == pytest.approx(r, abs=1e-9)
        assert sel.loc[stat, "abs_r"] == pytest.approx(abs(r), abs=1e-9)
        assert sel.loc[stat, "p_value"] == pytest.approx(p, rel=1e-6)
        assert sel.loc[stat, "abs_ci_low"] <= sel.loc[stat, "abs_ci_high"]
        assert sel.loc[stat, "n"] == 20


def test_clean_group_is_optional_and_few_groups_raise(scores_dir):
    s = load_scores(scores_dir)
    with_clean = groupwise(s, n_bootstrap=50, include_clean=True)
    assert (with_clean["n"] == 21).all()
    few = s.take(
        np.flatnonzero(
            np.isin(s.severity, [0, 1])
            & np.isin(s.corruption, s.corruptions.get_indexer(["clean", "fog"]))
        )
    )
    with pytest.raises(ValueError, match="at least 3"):
        groupwise(few, n_bootstrap=10)
