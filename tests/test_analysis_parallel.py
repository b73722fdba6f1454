"""(Q, M) pairs on a pool of threads give the serial numbers bit for bit; the point-wise fits
and bootstrap replicates shared with the paired tests are the ones each would compute."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iqa_lib.analysis import load_scores, mixtures, per_image, per_label, pointwise
from iqa_lib.analysis.common import parallel_map
from iqa_lib.analysis.paired import paired_tests
from iqa_lib.analysis.pointwise import auc_work
from iqa_lib.analysis.synthetic import write_synthetic_scores
from iqa_lib.stats import _kernels as K
from iqa_lib.stats.logistic import cv_groups, group_starts, sorted_blocks
from iqa_lib.stats.paired_bootstrap import auc_weights
from iqa_lib.stats.splits import kfold_within_groups


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    d = tmp_path_factory.mktemp("scores")
    write_synthetic_scores(d, 60, n_labels=7, seed=3)
    return load_scores(d)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_parallel_map_keeps_order_and_values():
    items = list(range(50))
    assert parallel_map(lambda i: i * i, items, 4) == [i * i for i in items]
    assert parallel_map(lambda i: i, [], 4) == []


@pytest.mark.parametrize("analysis", [per_label, per_image])
def test_cv_pairs_on_threads_equal_serial(scores, analysis):
    serial = analysis(scores, workers=1, return_groups=True)
    pooled = analysis(scores, workers=3, return_groups=True)
    _same(serial[0], pooled[0])
    _same(serial[1], pooled[1])


def test_cv_kernel_serial_equals_parallel(scores):
    q = next(iter(scores.q))
    y = scores.m[scores.task_models[0]]
    _, g = np.unique(scores.image, return_inverse=True)
    g = g.astype(np.int64)
    folds = kfold_within_groups(g, 5, 0, stratify=y)
    pre = group_starts(g)
    a = cv_groups(scores.q[q], y, g, folds, 5, presorted=pre, parallel=True)
    b = cv_groups(scores.q[q], y, g, folds, 5, presorted=pre, parallel=False)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_mixtures_on_threads_equal_serial(scores):
    fr = (0.05, 0.1, 0.2)
    serial = mixtures(scores, fractions=fr, workers=1)
    pooled = mixtures(scores, fractions=fr, workers=3)
    assert serial.keys() == pooled.keys()
    for k in serial:
        _same(serial[k], pooled[k])


def test_shared_work_gives_the_same_tables(scores):
    work = auc_work(scores, n_bootstrap=50, seed=4)
    _same(pointwise(scores, n_bootstrap=50, seed=4), pointwise(scores, n_bootstrap=50, seed=4, work=work))
    _same(
        paired_tests(scores, n_bootstrap=50, seed=4),
        paired_tests(scores, n_bootstrap=50, seed=4, work=work),
    )


def test_shared_replicates_are_the_paired_bootstraps_own(scores):
    """Column 0 of the shared weights is the sample itself; the other columns are exactly
    the paired bootstrap's resamples (``auc_weights``), and each column's AUC does not depend
    on the others, so the replicates equal a direct computation bit for bit."""
    work = auc_work(scores, n_bootstrap=40, seed=1)
    wt = auc_weights(work.n_img, 40, 1)
    for q in list(scores.q)[:3]:
        x_te = np.ascontiguousarray(scores.q[q].astype(np.float64)[work.test])
        order, blocks = sorted_blocks(x_te)
        for j, m in enumerate(scores.task_models):
            yt = np.ascontiguousarray(scores.m[m][work.test], dtype=np.int8)
            direct = K.bootstrap_auc_sorted(yt[order], work.test_cluster[order], blocks, wt)
            np.testing.assert_array_equal(work.raw[q][j][1:], direct)


def test_work_for_other_options_is_refused(scores):
    work = auc_work(scores, n_bootstrap=20, seed=0)
    with pytest.raises(ValueError, match="work="):
        pointwise(scores, n_bootstrap=20, seed=1, work=work)
    with pytest.raises(ValueError, match="work="):
        paired_tests(scores, n_bootstrap=30, seed=0, work=work)


def test_work_for_other_scores_is_refused_even_if_equal(scores):
    """The work names the very ScoreSet it came from: an equal copy (or a new set that reuses a
    freed one's id) is refused rather than silently paired with the old fits."""
    import copy

    work = auc_work(scores, n_bootstrap=20, seed=0)
    with pytest.raises(ValueError, match="work="):
        pointwise(copy.copy(scores), n_bootstrap=20, seed=0, work=work)
    pointwise(scores, n_bootstrap=20, seed=0, work=work)  # its own scores: accepted
