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

``small_n`` is a warning for readers, not a filter: the numbers are still written.
"""

from __future__ import annotations

import numpy as np

SMALL_N_CLASS_IMAGES = 30
SMALL_N_GROUPS = 10


def class_image_counts(y, image) -> tuple[int, int]:
    """(images with a correct row, images with an incorrect row) among the given rows."""
    y = np.asarray(y).astype(bool)
    image = np.asarray(image)
    return int(np.unique(image[y]).size), int(np.unique(image[~y]).size)


def small_auc(n_pos_images, n_neg_images):
    """True where either class has fewer than ``SMALL_N_CLASS_IMAGES`` test images."""
    return np.minimum(n_pos_images, n_neg_images) < SMALL_N_CLASS_IMAGES


def small_groups(n_groups):
    """True where a correlation (or a mean over groups) rests on fewer than
    ``SMALL_N_GROUPS`` groups; False where there is no such result (NaN)."""
    n = np.asarray(n_groups, dtype=np.float64)
    out = np.isfinite(n) & (n < SMALL_N_GROUPS)
    return bool(out) if out.ndim == 0 else out


__all__ = [
    "SMALL_N_CLASS_IMAGES",
    "SMALL_N_GROUPS",
    "class_image_counts",
    "small_auc",
    "small_groups",
]
