"""Train/test splits and cross-validation folds, seeded and vectorised.

Splits go by image ID (cluster) where rows of one image would otherwise sit on both sides:
the variants of one image are not independent samples.
"""

from __future__ import annotations

import numpy as np

from iqa_lib import defaults


def group_test_mask(
    groups, test_fraction: float = defaults.TEST_FRACTION, seed: int | np.random.Generator = defaults.SEED
) -> np.ndarray:
    """Row mask of the test side: a seeded ``test_fraction`` of the distinct group codes.

    Every row of a group lands on the same side. The number of test groups is
    ``round(test_fraction * n_groups)``, at least 1 and at most n_groups - 1.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    g = np.asarray(groups)
    present = np.unique(g)
    if present.size < 2:
        raise ValueError("a split by group needs at least 2 distinct groups (image IDs)")
    n_test = min(max(1, round(test_fraction * present.size)), present.size - 1)
    rng = np.random.default_rng(seed)
    test_groups = rng.choice(present, size=n_test, replace=False)
    return np.isin(g, test_groups)


def kfold_within_groups(
    groups, n_folds: int = defaults.N_FOLDS, seed: int | np.random.Generator = defaults.SEED, stratify=None
) -> np.ndarray:
    """Fold id (0..n_folds-1) per row, assigned within each group, sizes as equal as can be.

    Rows are shuffled within their group (and, with ``stratify``, ordered by that 0/1 label
    first) and dealt round-robin to the folds, so each fold gets its share of both classes
    (like scikit-learn's StratifiedKFold) whenever the rarer class has n_folds rows or more.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    g = np.asarray(groups)
    rng = np.random.default_rng(seed)
    keys = [rng.random(g.size)]
    if stratify is not None:
        keys.append(np.asarray(stratify))
    keys.append(g)
    order = np.lexsort(keys)
    gs = g[order]
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    lengths = np.diff(np.r_[starts, gs.size])
    pos = np.arange(g.size) - np.repeat(starts, lengths)
    # rotate the round-robin start per group so fold 0 is not always the largest
    offset = rng.integers(0, n_folds, size=starts.size)
    folds = np.empty(g.size, dtype=np.int16)
    folds[order] = (pos + np.repeat(offset, lengths)) % n_folds
    return folds


def kfold_by_cluster(
    groups, clusters, n_folds: int = defaults.N_FOLDS, seed: int | np.random.Generator = defaults.SEED
) -> np.ndarray:
    """Fold id per row such that all rows of one (group, cluster) share a fold.

    Used per label: the clusters (image IDs) of each label are dealt to the folds, so no
    image has variants on both the training and the test side.
    """
    g = np.asarray(groups)
    c = np.asarray(clusters)
    pairs, inverse = np.unique(np.stack([g, c]), axis=1, return_inverse=True)
    pair_folds = kfold_within_groups(pairs[0], n_folds, seed)
    return pair_folds[inverse.ravel()]
