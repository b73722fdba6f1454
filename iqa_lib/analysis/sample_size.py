"""When is a result's sample too small for its interval to mean anything: the one rule.

Every AUC and correlation table the analysis writes carries its n beside its interval
and a boolean ``small_n`` column set by the thresholds below. Why these numbers:

- AUC (``SMALL_N_CLASS_IMAGES`` = 30): an AUC compares correct with incorrect
  predictions, so its precision is set by the smaller class. The rows of one image (its
  corrupted variants) are strongly correlated, so the independent units are *images*: we
  count test images with at least one correct test row and test images with at least one
  incorrect test row (an image with both counts in both), and flag the AUC when either
  count is below 30. With 30 per class the Hanley-McNeil standard error of an AUC of 0.75
  is about 0.063 (a 95% interval about +-0.12) even for independent rows; below that the
  cluster-bootstrap percentile interval rests on a handful of distinct images and its
  coverage is not trustworthy. A 60-image folder has 12 test images: always flagged.
- Correlation over groups (``SMALL_N_GROUPS`` = 10): a rank correlation over fewer than
  10 (corruption, severity) groups has a 95% interval from about -0.2 to 0.86 at
  rho = 0.5 even at n = 10 (Fisher z, 1.96 / sqrt(n - 3)): it cannot tell a useful metric
  from a useless one, and its bootstrap resamples take few distinct values.
  The same threshold flags a cross-validated mean over fewer than 10 scored groups
  (per-label, per-image tables).
- Images per group (``SMALL_N_GROUP_IMAGES`` = 30): a group-wise correlation is also
  flagged when its smallest group's accuracy rests on fewer than 30 images (rows of the
  group with a known correctness for that task model). A group accuracy from fewer than
  30 images has a standard error of about 0.09 at 0.5 (sqrt(0.25 / 30)), as large as the
  accuracy differences between neighbouring severities, so the group means the
  correlation ranks are mostly noise. Worse, the groups share their images (every
  (corruption, severity) group of ImageNet-C renders the same photographs), so the groups
  are not independent units: the bootstrap over groups, which treats them as independent,
  gives intervals and p-values far too narrow when a handful of images lie behind all of
  them. Many groups do not make up for few images: 75 groups of the same 10 images are
  10 images. ``small_groups(n_groups, min_group_images)`` applies both conditions.

``small_n`` is a warning for readers, not a filter: the numbers are still written.
"""

from __future__ import annotations

import numpy as np

SMALL_N_CLASS_IMAGES = 30
SMALL_N_GROUPS = 10
SMALL_N_GROUP_IMAGES = 30


def class_image_counts(y, image) -> tuple[int, int]:
    """(images with a correct row, images with an incorrect row) among the given rows."""
    y = np.asarray(y).astype(bool)
    image = np.asarray(image)
    return int(np.unique(image[y]).size), int(np.unique(image[~y]).size)


def small_auc(n_pos_images, n_neg_images):
    """True where either class has fewer than ``SMALL_N_CLASS_IMAGES`` test images."""
    return np.minimum(n_pos_images, n_neg_images) < SMALL_N_CLASS_IMAGES


def group_image_counts(codes, n_groups: int, correct=None) -> np.ndarray:
    """Images behind each group's accuracy: rows with group code ``codes`` >= 0 (one row
    per image in a (corruption, severity) group) whose correctness is known (finite
    ``correct``, when given)."""
    codes = np.asarray(codes)
    keep = codes >= 0
    if correct is not None:
        keep &= np.isfinite(np.asarray(correct, dtype=np.float64))
    return np.bincount(codes[keep], minlength=n_groups)


def small_groups(n_groups, min_group_images=None):
    """True where a group-wise result rests on too small an n; False where there is no
    such result (NaN groups).

    Too small: fewer than ``SMALL_N_GROUPS`` groups, or (when ``min_group_images``, the
    image count of each result's smallest group, is given) fewer than
    ``SMALL_N_GROUP_IMAGES`` images in its smallest group. A NaN image count (a table
    written before that rule) is judged by the number of groups alone. Means over
    scored groups (per-label, per-image tables) pass no image count.
    """
    n = np.asarray(n_groups, dtype=np.float64)
    out = np.isfinite(n) & (n < SMALL_N_GROUPS)
    if min_group_images is not None:
        k = np.asarray(min_group_images, dtype=np.float64)
        out = out | (np.isfinite(n) & np.isfinite(k) & (k < SMALL_N_GROUP_IMAGES))
    return bool(out) if out.ndim == 0 else out


__all__ = [
    "SMALL_N_CLASS_IMAGES",
    "SMALL_N_GROUPS",
    "SMALL_N_GROUP_IMAGES",
    "class_image_counts",
    "group_image_counts",
    "small_auc",
    "small_groups",
]
