"""Paper-table views: point-wise and group-wise results side by side, and model pairs.

``summary_table`` gives one row per (task model, Q) with AUC, CE and |KRCC|, |SRCC|,
|PLCC| (Tables 1-3). ``pairs`` keeps the strong task-guided rows, Q from classifier A
(``q_model``) and M from classifier B (``m_model``), every ordered pair (Table 4);
``same_model`` marks its diagonal, which is what the paper's Table 2 shows.
"""

from __future__ import annotations

import pandas as pd

from iqa_lib.analysis.sample_size import small_groups

KEY = ["task_model", "scorer", "q", "kind"]
POINT_COLS = (
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "auc_raw",
    "auc_raw_ci_low",
    "auc_raw_ci_high",
    "ce",
    "ce_ci_low",
    "ce_ci_high",
    "slope",
    "status",
    "n_test_images",
    "n_test_pos_images",
    "n_test_neg_images",
    "small_n",
)


GROUP_COLS = [
    f"{stat}{suffix}"
    for stat in ("krcc", "srcc", "plcc")
    for suffix in ("", "_ci_low", "_ci_high", "_p_value")
]


def summary_table(point: pd.DataFrame, group: pd.DataFrame | None) -> pd.DataFrame:
    """Join point-wise metrics with the group-wise |r| and intervals, one row per pair.

    ``krcc``, ``srcc``, ``plcc`` are absolute correlations, ``*_ci_low``/``*_ci_high`` the
    bootstrap interval of the absolute value, ``*_p_value`` scipy's p-value. ``group``
    None (group-wise analysis skipped): those columns are present and empty.

    Sample sizes beside the intervals: ``n_test_images`` (and per class) for the AUC,
    ``n_groups`` and ``min_group_images`` (images in the smallest group) for the
    correlations; ``small_n_auc`` / ``small_n_corr`` flag either one as too small
    (:mod:`iqa_lib.analysis.sample_size`: for the correlations, too few groups or too few
    images per group), ``small_n`` is either flag.
    """
    cols = [c for c in point.columns if c in (*KEY, *POINT_COLS)]
    point = point[cols].rename(columns={"small_n": "small_n_auc"})
    if group is None or group.empty:
        out = point.assign(**{c: float("nan") for c in GROUP_COLS}, n_groups=float("nan"),
                           min_group_images=float("nan"))
        return _flag(out)
    out = point.merge(_wide_correlations(group).reset_index(), on=KEY, how="outer")
    return _flag(out.merge(_group_sizes(group), on=KEY, how="left"))


def _group_sizes(group: pd.DataFrame) -> pd.DataFrame:
    """Per (task model, Q): the number of groups and the smallest group's images."""
    sizes = {"n": "n_groups", "min_group_images": "min_group_images"}
    sizes = {k: v for k, v in sizes.items() if k in group.columns}  # older tables: groups only
    return group.groupby(KEY, sort=False)[list(sizes)].first().rename(columns=sizes).reset_index()


def _wide_correlations(group: pd.DataFrame) -> pd.DataFrame:
    """The group-wise table one row per (task model, Q): |r|, its interval and p per statistic."""
    wide = group.pivot_table(
        index=KEY,
        columns="stat",
        values=["abs_r", "abs_ci_low", "abs_ci_high", "p_value"],
        aggfunc="first",
    )
    wide.columns = [
        f"{stat}{'' if v == 'abs_r' else '_' + v.replace('abs_', '')}" for v, stat in wide.columns
    ]
    return wide[[c for c in GROUP_COLS if c in wide.columns]]


def _flag(out: pd.DataFrame) -> pd.DataFrame:
    # rows without a point-wise result (outer join) have no AUC to flag
    out["small_n_auc"] = out["small_n_auc"].eq(True) if "small_n_auc" in out else False
    images = out["min_group_images"].to_numpy(dtype=float) if "min_group_images" in out else None
    out["small_n_corr"] = small_groups(out["n_groups"].to_numpy(dtype=float), images)
    out["small_n"] = out["small_n_auc"] | out["small_n_corr"]
    return out


def pairs(summary: pd.DataFrame, classifiers: list[str]) -> pd.DataFrame:
    """Rows of ``summary`` with Q from classifier A and M from classifier B, every pair."""
    keep = summary["scorer"].isin(classifiers) & summary["task_model"].isin(classifiers)
    out = summary.loc[keep].rename(columns={"scorer": "q_model", "task_model": "m_model"})
    out.insert(2, "same_model", out["q_model"] == out["m_model"])
    return out.drop(columns="kind").sort_values(["q", "q_model", "m_model"]).reset_index(drop=True)
