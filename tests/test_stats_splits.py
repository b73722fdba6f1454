"""Splits by image ID and cross-validation folds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iqa_lib.stats.splits import group_test_mask, kfold_by_cluster, kfold_within_groups


def test_group_split_keeps_every_image_on_one_side_and_has_the_asked_fraction():
    groups = np.repeat(np.arange(500), 7)
    test = group_test_mask(groups, 0.2, seed=1)
    test_ids, train_ids = set(groups[test]), set(groups[~test])
    assert not test_ids & train_ids
    assert len(test_ids) == 100
    np.testing.assert_array_equal(test, group_test_mask(groups, 0.2, seed=1))
    assert not np.array_equal(test, group_test_mask(groups, 0.2, seed=2))


def test_group_split_rejects_bad_input():
    with pytest.raises(ValueError, match="test_fraction"):
        group_test_mask(np.arange(10), 1.5)
    with pytest.raises(ValueError, match="2 distinct"):
        group_test_mask(np.zeros(5, dtype=int), 0.2)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=12), st.integers(2, 6), st.integers(0, 100)
)
def test_folds_within_groups_are_balanced_and_stratified(sizes, k, seed):
    groups = np.repeat(np.arange(len(sizes)), sizes)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, groups.size)
    folds = kfold_within_groups(groups, k, seed, stratify=y)
    assert folds.min() >= 0 and folds.max() < k
    for g in range(len(sizes)):
        for cls in (0, 1):
            counts = np.bincount(folds[(groups == g) & (y == cls)], minlength=k)
            assert counts.max() - counts.min() <= 1  # dealt round-robin per class
        sizes_g = np.bincount(folds[groups == g], minlength=k)
        assert sizes_g.max() - sizes_g.min() <= 1


def test_folds_by_cluster_never_split_an_image():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 4000)
    images = rng.integers(0, 300, 4000)
    folds = kfold_by_cluster(labels, images, 5, seed=0)
    for key in set(zip(labels, images, strict=True)):
        sel = (labels == key[0]) & (images == key[1])
        assert len(set(folds[sel])) == 1
    assert set(folds) == set(range(5))
