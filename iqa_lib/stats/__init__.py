"""Statistics for the paper's analyses: correlations, bootstrap, logistic regression, splits.

Every function here works on plain numpy arrays, checks its input (NaN is rejected with a
clear error) and is deterministic given its seed. The heavy kernels (batched logistic
fits, per-group AUC, cluster-bootstrap AUC) are compiled with numba when it is installed
(it comes with ``imagecorruptions-imaug``) and run as plain Python otherwise.
"""

from iqa_lib.stats.bootstrap import bootstrap_indices, cluster_weights, percentile_ci
from iqa_lib.stats.correlation import bootstrap_correlations, correlation_rows
from iqa_lib.stats.logistic import (
    STATUS_NAMES,
    LogitFit,
    auc_score,
    cross_entropy,
    cv_groups,
    fit_logistic,
    fit_logistic_groups,
    grouped_auc,
)
from iqa_lib.stats.splits import group_test_mask, kfold_by_cluster, kfold_within_groups

__all__ = [
    "STATUS_NAMES",
    "LogitFit",
    "auc_score",
    "bootstrap_correlations",
    "bootstrap_indices",
    "cluster_weights",
    "correlation_rows",
    "cross_entropy",
    "cv_groups",
    "fit_logistic",
    "fit_logistic_groups",
    "group_test_mask",
    "grouped_auc",
    "kfold_by_cluster",
    "kfold_within_groups",
    "percentile_ci",
]
