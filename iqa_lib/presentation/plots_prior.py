"""Figure of the accuracy prior's validation: predicted against actual accuracy per group.

One panel per estimator (method, and Q for the Q-prior) of one task model, best first; one
point per held-out (corruption, severity) group, coloured by corruption and sized by
severity, a black-edged diamond per corruption's severities pooled (a mixed set), with the
y = x line and the mean / max absolute error (and the pooled sets' mean) in the title.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # scripts and tests write files; a notebook keeps its inline backend
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from iqa_lib.analysis.prior.estimators import label  # noqa: E402
from iqa_lib.analysis.prior.validation import SUMMARY_KEYS  # noqa: E402
from iqa_lib.presentation.plots import corruption_colors, save_figure  # noqa: E402


def prior_panel(rows: pd.DataFrame, title: str, colors: dict, ax: plt.Axes) -> plt.Axes:
    """Predicted (y) against actual (x) accuracy of one estimator, one point per group and a
    diamond per pooled set."""
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", zorder=0)
    pooled = rows["pooled"].fillna(False).to_numpy(bool) if "pooled" in rows else np.zeros(len(rows), dtype=bool)
    for corruption, g in rows[pooled].groupby("corruption", sort=False):
        ax.scatter(g["actual"], g["predicted"], s=34, marker="D", color=colors[corruption], alpha=0.9,
                   edgecolors="black", linewidths=0.8, zorder=3)
    for corruption, g in rows[~pooled].groupby("corruption", sort=False):
        ax.scatter(g["actual"], g["predicted"], s=6 + 8 * g["severity"], color=colors[corruption],
                   label=corruption.replace("_", " "), alpha=0.85, edgecolors="white", linewidths=0.3)
    ax.set_title(title, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    return ax


def prior_figure(
    table: pd.DataFrame, summary: pd.DataFrame, task_model: str, ncols: int = 4,
    max_panels: int | None = None,
) -> plt.Figure:
    """All estimators of ``task_model`` (summary order: smallest of the worse of the groups' and
    the pooled sets' mean absolute error first)."""
    rows = summary[summary["task_model"] == task_model]
    if rows.empty:
        raise KeyError(f"no prior validation rows for task model {task_model!r}")
    if max_panels:
        rows = rows.head(max_panels)
    n = len(rows)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols + 1.8, 3.0 * nrows + 0.5), squeeze=False)
    colors = corruption_colors(list(dict.fromkeys(table["corruption"])))
    keyed = table.set_index(SUMMARY_KEYS).sort_index()
    for ax, (_, r) in zip(axes.flat, rows.iterrows(), strict=False):
        pts = keyed.loc[tuple(r[k] for k in SUMMARY_KEYS)].reset_index()
        title = (f"{label(r)}\nmean |err| {r['mean_abs_error_pts']:.1f} pts "
                 f"[{r['mean_ci_low']:.1f}, {r['mean_ci_high']:.1f}], max {r['max_abs_error_pts']:.1f}")
        if np.isfinite(r.get("pooled_mean_abs_error_pts", np.nan)):
            title += f"\npooled severities (\u25c6): mean |err| {r['pooled_mean_abs_error_pts']:.1f}"
        prior_panel(pts, title, colors, ax)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted accuracy", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel(f"actual accuracy of {task_model}", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if "pooled" in table and table["pooled"].any():
        handles.append(plt.Line2D([], [], marker="D", ls="", color="white", markeredgecolor="black",
                                  markersize=5))
        labels.append("its severities\npooled")
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False,
               title="held-out corruption\n(size = severity)", title_fontsize=7)
    pooled = " and on its severities pooled (\u25c6)" if "pooled" in table and table["pooled"].any() else ""
    fig.suptitle(f"Accuracy of {task_model} predicted on each held-out corruption and severity{pooled} "
                 "(leave one corruption out; y = x dashed)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.85, 0.97))
    return fig


def save_prior_figures(
    table: pd.DataFrame, summary: pd.DataFrame, out_dir: str | os.PathLike
) -> list[Path]:
    """``prior_<task model>.png`` and ``.pdf`` for every task model, written atomically."""
    written: list[Path] = []
    for model in summary["task_model"].unique():
        written += save_figure(prior_figure(table, summary, model), Path(out_dir) / f"prior_{model}")
    return written
