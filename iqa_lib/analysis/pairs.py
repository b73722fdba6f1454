"""Paper-table views: point-wise and group-wise results side by side, and model pairs.

``summary_table`` gives one row per (task model, Q) with AUC, CE and |KRCC|, |SRCC|,
|PLCC| (Tables 1-3). ``pairs`` keeps the strong task-guided rows, Q from classifier A
(``q_model``) and M from classifier B (``m_model``), every ordered pair (Table 4);
``same_model`` marks its diagonal, which is what the paper's Table 2 shows.
"""

from __future__ import annotations

import pandas as pd

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
    """
    cols = [c for c in point.columns if c in (*KEY, *POINT_COLS)]
    if group is None or group.empty:
        return point[cols].assign(**{c: float("nan") for c in GROUP_COLS})
    wide = group.pivot_table(
        index=KEY,
        columns="stat",
        values=["abs_r", "abs_ci_low", "abs_ci_high", "p_value"],
        aggfunc="first",
    )
    wide.columns = [
        f"{stat}{'' if v == 'abs_r' else '_' + v.replace('abs_', '')}" for v, stat in wide.columns
    ]
    wide = wide[[c for c in GROUP_COLS if c in wide.columns]]
    return point[cols].merge(wide.reset_index(), on=KEY, how="outer")


def pairs(summary: pd.DataFrame, classifiers: list[str]) -> pd.DataFrame:
    """Rows of ``summary`` with Q from classifier A and M from classifier B, every pair."""
    keep = summary["scorer"].isin(classifiers) & summary["task_model"].isin(classifiers)
    out = summary.loc[keep].rename(columns={"scorer": "q_model", "task_model": "m_model"})
    out.insert(2, "same_model", out["q_model"] == out["m_model"])
    return out.drop(columns="kind").sort_values(["q", "q_model", "m_model"]).reset_index(drop=True)
