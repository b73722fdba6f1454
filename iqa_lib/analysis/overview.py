"""Every (Q, M) pair at a glance: point-wise AUC and group-wise |SRCC| with their intervals.

``summary.csv`` (:func:`iqa_lib.analysis.pairs.summary_table`) has one row per
(task model M, scorer, Q variable) with dozens of columns; a reader first wants
the ranking. :func:`pair_overview` keeps the two headline statistics, their
intervals and the sizes they rest on, sorted best first; :func:`overview_matrix`
pivots one of them into the Q x M grid the heatmap draws.
"""

from __future__ import annotations

import pandas as pd

OVERVIEW_COLUMNS = (
    "Q", "M", "kind", "auc", "auc_ci_low", "auc_ci_high", "n_test_images", "n_test",
    "srcc", "srcc_ci_low", "srcc_ci_high", "n_groups", "small_n",
)


def pair_overview(
    summary: pd.DataFrame, pointwise: pd.DataFrame | None = None, groupwise: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (Q, M): AUC and |SRCC| with intervals and n, best AUC first.

    ``Q`` is ``<scorer>.<q>`` (``brisque.q``, ``lite0.q_p``). ``n_test_images`` (held-out
    image IDs, the bootstrap's unit) and ``n_test`` (held-out rows: every variant of those
    images) size the AUC, ``n_groups`` ((corruption, severity) groups) the correlation;
    ``small_n``: either is too small for its interval to mean anything
    (:mod:`iqa_lib.analysis.sample_size`). ``n_test`` comes from ``pointwise`` when given.
    """
    keys = ["task_model", "scorer", "q"]
    df = summary.copy()
    if pointwise is not None and "n_test" in pointwise:
        df = df.merge(pointwise[[*keys, "n_test"]], on=keys, how="left")
    if groupwise is not None and "n" in groupwise and "n_groups" not in df:  # older summaries
        srcc = groupwise[groupwise["stat"] == "srcc"][[*keys, "n"]].rename(columns={"n": "n_groups"})
        df = df.merge(srcc, on=keys, how="left")
    for col in ("n_test_images", "n_test", "n_groups", "small_n", "srcc", "srcc_ci_low", "srcc_ci_high"):
        if col not in df:
            df[col] = pd.NA
    df.insert(0, "Q", df["scorer"] + "." + df["q"])
    df = df.rename(columns={"task_model": "M"})
    out = df[list(OVERVIEW_COLUMNS)]
    return out.sort_values(["auc", "srcc"], ascending=False, kind="stable", na_position="last").reset_index(drop=True)


def overview_matrix(overview: pd.DataFrame, value: str = "auc") -> pd.DataFrame:
    """``value`` as a Q x M grid (rows in the overview's order: best first)."""
    order = list(dict.fromkeys(overview["Q"]))
    grid = overview.pivot_table(index="Q", columns="M", values=value, aggfunc="first")
    return grid.reindex([q for q in order if q in grid.index])
