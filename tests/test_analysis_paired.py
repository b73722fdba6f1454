"""paired_tests on scores whose answer is known, and the small-n flags of every table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from iqa_lib.analysis import groupwise, load_scores, mixtures, pointwise, summary_table
from iqa_lib.analysis.content import per_image
from iqa_lib.analysis.io import ScoreSet
from iqa_lib.analysis.paired import COLUMNS, paired_tests, within_table
from iqa_lib.analysis.sample_size import SMALL_N_CLASS_IMAGES, SMALL_N_GROUP_IMAGES, SMALL_N_GROUPS
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.presentation.tables import mark_vs_best, table1, to_markdown
from iqa_lib.stats.delong import delong_test
from iqa_lib.stats.splits import group_test_mask


def _known(n_images=300, seed=0) -> ScoreSet:
    """M driven by a latent per-row quality: ``good`` sees it, ``noise`` does not, ``good_t``
    is a strictly increasing transform of ``good``, ``bad`` is ``good`` negated (a Q whose
    low values mean correct). 15 corruption groups + clean, 16 rows per image."""
    rng = np.random.default_rng(seed)
    cors = ["clean", "a", "b", "c", "d", "e"]
    var = [(0, 0)] + [(c, s) for c in range(1, 6) for s in (1, 2, 3)]
    img = np.repeat(np.arange(n_images), len(var)).astype(np.int32)
    cor = np.tile([c for c, _ in var], n_images).astype(np.int16)
    sev = np.tile([s for _, s in var], n_images).astype(np.int16)
    strength = np.array([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    latent = rng.normal(0, 1, n_images)[img] - strength[cor] * sev + rng.normal(0, 0.5, img.size)
    m = (latent + rng.logistic(0, 0.5, img.size) > -1.0).astype(np.int8)
    good = (latent + rng.normal(0, 0.3, img.size)).astype(np.float32)
    q = {
        ("good", "q"): good,
        ("noise", "q"): rng.normal(0, 1, img.size).astype(np.float32),
        ("good_t", "q"): (2.0 * good.astype(np.float64) + 1.0),
        ("bad", "q"): -good,
    }
    return ScoreSet(
        image=img,
        image_ids=pd.Index([f"img{i}" for i in range(n_images)]),
        corruption=cor,
        corruptions=pd.Index(cors),
        severity=sev,
        label=img.astype(np.int64) % 7,
        q=q,
        m={"clf": m, "clf2": np.where(rng.random(img.size) < 0.1, 1 - m, m).astype(np.int8)},
        kinds={
            "good": "nr_iqa",
            "noise": "nr_iqa",
            "good_t": "nr_iqa",
            "bad": "nr_iqa",
            "clf": "classifier",
            "clf2": "classifier",
        },
    )


@pytest.fixture(scope="module")
def known():
    return _known()


@pytest.fixture(scope="module")
def table(known):
    return paired_tests(known, n_bootstrap=300, seed=2)


def _row(table, model, a, b):
    sel = table[(table.task_model == model) & (table.scorer_a == a) & (table.scorer_b == b)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_one_row_per_unordered_pair_and_model(table):
    assert list(table.columns) == COLUMNS
    assert len(table) == 2 * 6  # 2 task models x C(4, 2)
    assert not table.duplicated(["task_model", "scorer_a", "scorer_b"]).any()
    assert (table["holm_family"] == table["task_model"]).all() and table["delong_clustered"].all()


def test_a_predictive_q_beats_noise_significantly(table):
    r = _row(table, "clf", "good", "noise")
    assert r.auc_a > 0.8 and abs(r.auc_b - 0.5) < 0.1
    assert r.auc_diff > 0 and r.auc_diff_ci_low > 0 and r.delong_p_holm < 1e-6
    assert r.auc_p_boot < 1e-6 and r.significant_auc
    assert r.srcc_a > 0.9 and r.srcc_diff > 0 and r.srcc_diff_ci_low > 0 and r.significant_srcc
    assert not r.small_n
    assert r.n_test_images == 60 and r.n_test == 60 * 16 and r.n_groups == 15


def test_a_monotone_transform_of_itself_is_not_different(table):
    for model in ("clf", "clf2"):
        r = _row(table, model, "good", "good_t")
        assert r.auc_diff == 0.0 and r.delong_p == 1.0 and r.delong_z == 0.0
        assert r.auc_p_boot == 1.0 and r.auc_diff_ci_low == r.auc_diff_ci_high == 0.0
        assert r.srcc_diff == 0.0 and r.srcc_p_boot == 1.0
        assert not r.significant_auc and not r.significant_srcc


def test_orientation_follows_the_training_slope(table):
    """``bad`` = -good: its fitted slope is negative, so it is oriented to the same AUC."""
    r = _row(table, "clf", "good", "bad")
    assert r.auc_a == pytest.approx(r.auc_b, abs=1e-12) and r.delong_p == 1.0
    assert r.srcc_a == pytest.approx(r.srcc_b, abs=1e-12)


def test_aucs_equal_pointwise_and_srcc_equals_groupwise(known, table):
    pw = pointwise(known, n_bootstrap=0, seed=2)
    gw = groupwise(known, n_bootstrap=20, seed=2)
    gw = gw[gw["stat"] == "srcc"]
    for side in ("a", "b"):
        m = table.merge(
            pw, left_on=["task_model", f"scorer_{side}"], right_on=["task_model", "scorer"]
        )
        assert len(m) == len(table)
        np.testing.assert_allclose(m[f"auc_{side}"], m["auc"], rtol=0, atol=1e-12)
        g = table.merge(
            gw, left_on=["task_model", f"scorer_{side}"], right_on=["task_model", "scorer"]
        )
        np.testing.assert_allclose(g[f"srcc_{side}"], g["abs_r"], rtol=0, atol=1e-12)


def test_delong_is_clustered_by_test_image(known, table):
    """delong_p is the clustered test on point-wise's test rows (not the row-wise one), each
    Q multiplied by the sign of its point-wise slope."""
    test = group_test_mask(known.image, 0.2, seed=2)
    y = known.m["clf"][test]
    slope = pointwise(known, None, ["clf"], n_bootstrap=0, seed=2).set_index("scorer")["slope"]
    a = np.sign(slope["good"]) * known.q[("good", "q")][test]
    b = np.sign(slope["noise"]) * known.q[("noise", "q")][test]
    r = _row(table, "clf", "good", "noise")
    clustered = delong_test(a, b, y, clusters=known.image[test])
    assert r.delong_z == pytest.approx(clustered.z, rel=1e-10)
    assert r.delong_var != pytest.approx(delong_test(a, b, y).var_diff, rel=1e-3)


def test_holm_is_over_the_pairs_of_one_task_model(table):
    for _, fam in table.groupby("task_model"):
        p = fam["delong_p"].to_numpy()
        ok = np.isfinite(p)
        order = np.argsort(p[ok])
        adj = np.minimum(1, np.maximum.accumulate((ok.sum() - np.arange(ok.sum())) * p[ok][order]))
        np.testing.assert_allclose(fam["delong_p_holm"].to_numpy()[ok][order], adj)


def test_seeded_and_no_bootstrap(known):
    a = paired_tests(known, [("good", "q"), ("noise", "q")], ["clf"], n_bootstrap=30, seed=1)
    b = paired_tests(known, [("good", "q"), ("noise", "q")], ["clf"], n_bootstrap=30, seed=1)
    pd.testing.assert_frame_equal(a, b)
    c = paired_tests(known, [("good", "q"), ("noise", "q")], ["clf"], n_bootstrap=0, seed=1)
    assert c["auc_diff_ci_low"].isna().all() and c["delong_p"].notna().all()
    assert c["srcc_diff"].notna().all() and c["srcc_p_boot"].isna().all()
    assert paired_tests(known, [("good", "q")], ["clf"], n_bootstrap=0).empty


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The issue's case: a 60-image folder, 12 test images."""
    d = write_synthetic_scores(
        tmp_path_factory.mktemp("tiny") / "scores",
        60,
        corruptions=("fog", "snow"),
        severities=(1, 2, 3),
        n_labels=5,
        nr_scorers=("tv",),
        classifiers=("resnet34",),
        zero_shot=("zsclip",),
    )
    return load_scores(d)


def test_small_n_flags_a_60_image_folder_everywhere(tiny):
    assert SMALL_N_CLASS_IMAGES == 30 and SMALL_N_GROUPS == 10
    pt = paired_tests(tiny, n_bootstrap=20)
    assert pt["small_n"].all() and pt["small_n_auc"].all() and pt["small_n_srcc"].all()
    assert (pt["n_test_images"] == 12).all() and (pt["n_groups"] == 6).all()
    # no test is valid at this n: raw statistics kept, no adjusted p, significance untested (NA)
    assert not pt["auc_test_valid"].any() and not pt["srcc_test_valid"].any()
    assert pt["significant_auc"].isna().all() and pt["significant_srcc"].isna().all()
    assert pt["delong_p_holm"].isna().all() and pt["srcc_p_holm"].isna().all()
    assert pt["delong_p"].notna().any()
    pw = pointwise(tiny, n_bootstrap=20)
    assert pw["small_n"].all() and (pw["n_test_pos_images"] <= 12).all()
    gw = groupwise(tiny, n_bootstrap=20)
    assert gw["small_n"].all()
    s = summary_table(pw, gw)
    assert s["small_n"].all() and s["small_n_auc"].all() and s["small_n_corr"].all()
    assert (s["n_test_images"] == 12).all() and (s["n_groups"] == 6).all()
    mix = mixtures(tiny, fractions=[0.05, 0.1])
    auc = mix["auc"]
    assert (auc["n_test_images"] == 12).all() and (auc["n_test"] == 12).all()
    assert auc["small_n"].all() and mix["summary"]["small_n"].all()
    assert (mix["summary"]["n_mixtures_small_n"] == 2).all()
    pi = per_image(tiny, n_folds=5)
    assert {"mean_n_test_fold", "min_n_test_fold", "small_n"} <= set(pi)


def test_small_n_is_not_set_on_a_large_case(known):
    pw = pointwise(known, n_bootstrap=0, seed=2)
    assert (pw[["n_test_pos_images", "n_test_neg_images"]] >= 30).all().all()
    assert not pw["small_n"].any()
    gw = groupwise(known, n_bootstrap=20)
    s = summary_table(pw, gw)
    assert not s["small_n"].any() and (s["n_groups"] == 15).all()
    assert not summary_table(pw, None)["small_n"].any()  # no correlation: nothing to flag
    pi = per_image(known, n_folds=4)
    assert not pi["small_n"].any() and (pi["min_n_test_fold"] == 4).all()


@pytest.mark.parametrize("n_images", [10, 40])
def test_srcc_test_needs_enough_images_in_every_group(tmp_path, n_images):
    """75 groups of the same 10 images (the demo): no |SRCC| test, no p-value in the table; 40 images: tested."""
    assert SMALL_N_GROUP_IMAGES == 30
    s = load_scores(write_synthetic_scores(tmp_path / "s", n_images, n_labels=4, classifiers=("resnet34",),
                                           nr_scorers=("tv", "brisque", "clipiqa"), zero_shot=()))
    small = n_images < SMALL_N_GROUP_IMAGES
    pt = paired_tests(s, n_bootstrap=50, seed=1)
    assert (pt["n_groups"] == 75).all() and (pt["min_group_images"] == n_images).all()
    assert pt["srcc_p_boot"].notna().all()  # the raw statistic is kept either way
    assert (pt["small_n_srcc"] == small).all() and (pt["srcc_test_valid"] == (not small)).all()
    assert pt["significant_srcc"].isna().all() == small and pt["srcc_p_holm"].isna().all() == small
    pw, gw = pointwise(s, n_bootstrap=0, seed=1), groupwise(s, n_bootstrap=20, seed=1)
    summary = summary_table(pw, gw)
    assert (summary["min_group_images"] == n_images).all() and (summary["small_n_corr"] == small).all()
    t1 = table1(summary, {"tv": "TV", "resnet34": "resnet34"})
    pairs = within_table(pt, t1[["task_model", "scorer", "q"]])
    assert (pairs["srcc_test_valid"] == (not small)).all()
    marks = mark_vs_best(t1, pairs)["srcc_vs_best"]
    others = marks[marks != "best"]
    assert len(others) == 2
    if small:
        assert (others == "n too small").all()
    else:
        assert others.str.contains(r"\(p ").all()
    md = to_markdown(mark_vs_best(t1, pairs))
    assert f"/ 75 (≥{n_images} images each)" in md
    # the correlation cells (the only ones with an interval here: no AUC bootstrap) carry the dagger
    assert bool(re.search(r"\d\.\d{3} \[-?\d\.\d{3}, \d\.\d{3}\] †", md)) == small
