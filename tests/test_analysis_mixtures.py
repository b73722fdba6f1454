"""Mild-corruption mixtures: row selection, determinism, tables."""

from __future__ import annotations

import numpy as np
import pytest

from iqa_lib.analysis import load_scores, make_mixture, mixtures
from iqa_lib.analysis.synthetic import write_synthetic_scores


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    d = write_synthetic_scores(
        tmp_path_factory.mktemp("mix") / "scores",
        200,
        corruptions=("fog", "snow", "speckle_noise"),
        severities=(1, 2, 3, 4, 5),
        n_labels=10,
        nr_scorers=("tv",),
        classifiers=("resnet34",),
        zero_shot=("zsclip",),
    )
    return load_scores(d)


def test_a_mixture_has_one_row_per_image_and_the_asked_share_corrupted(scores):
    rows = make_mixture(scores, 0.1, seed=5)
    assert rows.size == 200
    assert np.unique(scores.image[rows]).size == 200
    corrupted = rows[~scores.clean_mask()[rows]]
    assert corrupted.size == 20
    names = np.asarray(scores.corruptions)[scores.corruption[corrupted]]
    # default: the ImageNet-C corruptions present (speckle_noise is not one of the 15)
    assert set(names) <= {"fog", "snow"}
    assert set(scores.severity[corrupted]) <= {1, 2, 3}
    np.testing.assert_array_equal(rows, make_mixture(scores, 0.1, seed=5))
    assert not np.array_equal(rows, make_mixture(scores, 0.1, seed=6))


def test_mixture_options_and_errors(scores):
    rows = make_mixture(scores, 0.5, corruptions=["speckle_noise"], severities=[5], seed=0)
    corrupted = rows[~scores.clean_mask()[rows]]
    assert corrupted.size == 100 and set(scores.severity[corrupted]) == {5}
    assert scores.clean_mask()[make_mixture(scores, 0.0)].all()
    with pytest.raises(ValueError, match="not in the scores"):
        make_mixture(scores, 0.1, corruptions=["frost"])
    with pytest.raises(ValueError, match="fraction"):
        make_mixture(scores, 1.5)


def test_mixtures_tables(scores):
    out = mixtures(scores, fractions=[0.01, 0.05, 0.2], seed=1)
    n_q, n_m = len(scores.q), len(scores.m)
    assert len(out["auc"]) == 3 * n_q * n_m
    assert set(out["auc"]["p_c"]) == {0.01, 0.05, 0.2}
    assert (out["auc"].groupby("p_c")["n_corrupted"].first().to_numpy() == [2, 10, 40]).all()
    assert len(out["summary"]) == n_q * n_m
    first = out["summary"].iloc[0]
    sel = out["auc"][
        (out["auc"].task_model == first.task_model)
        & (out["auc"].scorer == first.scorer)
        & (out["auc"].q == first.q)
    ]
    assert first.mean_auc == pytest.approx(sel["auc"].mean())
    assert len(out["quantiles"]) == 3 * n_q
    assert (out["quantiles"]["q00"] <= out["quantiles"]["q50"]).all()
    hist = out["histogram"]
    assert (hist.groupby(["p_c", "scorer", "q"])["count"].sum() == 200).all()
