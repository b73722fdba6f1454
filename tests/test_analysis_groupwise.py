"""Group-wise analysis against pandas group means and scipy correlations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from iqa_lib.analysis import group_means, groupwise, load_scores
from iqa_lib.analysis.sample_size import SMALL_N_GROUP_IMAGES, SMALL_N_GROUPS, small_groups
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


@pytest.fixture(scope="module")
def few_and_many(tmp_path_factory):
    """75 ImageNet-C groups of the same 10 images (the demo's shape), and of 40 images."""
    root = tmp_path_factory.mktemp("gw_images")
    kw = dict(n_labels=4, nr_scorers=("tv", "brisque"), classifiers=("resnet34",), zero_shot=())
    return {n: load_scores(write_synthetic_scores(root / f"s{n}", n, **kw)) for n in (10, 40)}


def test_few_images_per_group_flag_a_correlation_over_many_groups(few_and_many):
    assert SMALL_N_GROUP_IMAGES == 30
    few, many = (groupwise(few_and_many[n], n_bootstrap=20, seed=1) for n in (10, 40))
    assert (few["n"] == 75).all() and (few["min_group_images"] == 10).all()
    assert few["small_n"].all()  # 75 groups, but every group accuracy rests on the same 10 images
    assert (many["min_group_images"] == 40).all() and not many["small_n"].any()
    # the statistic itself is unchanged: scipy's Spearman on the group means
    means = group_means(few_and_many[10])
    key = ["corruption", "severity"]
    acc = means[(means.measure == "accuracy") & (means.source == "resnet34")].set_index(key)["mean"]
    q = means[(means.measure == "q") & (means.source == "tv")].set_index(key)["mean"]
    r = few[(few.scorer == "tv") & (few.task_model == "resnet34") & (few.stat == "srcc")].iloc[0]
    assert r["r"] == pytest.approx(stats.spearmanr(q, acc.loc[q.index]).statistic, abs=1e-12)
    # the smallest group decides; without image counts the rule is the number of groups alone
    s = few_and_many[40]
    group = np.flatnonzero((s.corruption == s.corruptions.get_loc("fog")) & (s.severity == 3))
    cut = groupwise(s.take(np.setdiff1d(np.arange(s.n_rows), group[:11])), n_bootstrap=10)
    assert (cut["min_group_images"] == 29).all() and cut["small_n"].all()
    assert list(small_groups([75, 75, 9, np.nan], [10, 30, 40, 10])) == [True, False, True, False]
    assert list(small_groups([75, 9])) == [False, True] and small_groups(SMALL_N_GROUPS, np.nan) is False
