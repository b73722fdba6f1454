"""The paper's figures, drawn from the tidy tables of :mod:`iqa_lib.analysis`.

Scatter plots show one point per (corruption, severity) group, coloured by
corruption and sized by severity, with the group-wise correlations in the
title, so a reader sees at once whether Q tracks accuracy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # scripts and tests write files; a notebook keeps its inline backend
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from iqa_lib.corruptions import ALL_CORRUPTIONS  # noqa: E402
from iqa_lib.fileio import atomic_write_with  # noqa: E402

Q_LABELS = {"q": "Q", "q_p": "$Q_p$ (max prob.)", "q_h": "$Q_h$ (entropy)", "q_l": "$Q_l$ (max logit)"}
Q_SHORT = {"q": "Q", "q_p": "$Q_p$", "q_h": "$Q_h$", "q_l": "$Q_l$"}
_PALETTE = plt.get_cmap("tab20").colors


def corruption_colors(corruptions: Sequence[str]) -> dict[str, tuple]:
    """Stable colours: a corruption keeps its colour across every figure."""
    order = {c: i for i, c in enumerate(ALL_CORRUPTIONS)}
    return {c: _PALETTE[order.get(c, len(order) + i) % len(_PALETTE)] for i, c in enumerate(corruptions)}


def group_points(means: pd.DataFrame, task_model: str, scorer: str, variant: str) -> pd.DataFrame:
    """Join a task model's group accuracy with a scorer's group mean Q (one row per group)."""
    keys = ["corruption", "severity"]
    acc = means[(means["measure"] == "accuracy") & (means["source"] == task_model)]
    q = means[(means["measure"] == "q") & (means["source"] == scorer) & (means["variant"] == variant)]
    if acc.empty or q.empty:
        missing = task_model if acc.empty else f"{scorer}/{variant}"
        raise KeyError(f"no group means for {missing!r}")
    return acc[keys + ["mean"]].rename(columns={"mean": "accuracy"}).merge(
        q[keys + ["mean"]].rename(columns={"mean": "q"}), on=keys
    )


def scatter_accuracy_vs_q(
    means: pd.DataFrame,
    task_model: str,
    scorer: str,
    variant: str = "q",
    ax: plt.Axes | None = None,
    legend: bool = True,
) -> plt.Axes:
    """Accuracy of ``task_model`` against mean Q of ``scorer``: one point per group."""
    pts = group_points(means, task_model, scorer, variant)
    standalone = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.2))
    colors = corruption_colors(list(dict.fromkeys(pts["corruption"])))
    for corruption, g in pts.groupby("corruption", sort=False):
        ax.scatter(
            g["q"], g["accuracy"], s=12 + 14 * g["severity"], color=colors[corruption],
            label=corruption.replace("_", " "), alpha=0.85, edgecolors="white", linewidths=0.4,
        )
    what = f"{scorer} {Q_SHORT.get(variant, variant)}" if variant != "q" else scorer
    if standalone:  # a figure of its own says whose accuracy it plots; a grid's title does
        what = f"Accuracy of {task_model} vs mean {what}"
    if len(pts) >= 3:
        srcc = stats.spearmanr(pts["q"], pts["accuracy"]).statistic
        plcc = stats.pearsonr(pts["q"], pts["accuracy"]).statistic
        ax.set_title(f"{what}\n|SRCC| {abs(srcc):.2f}  |PLCC| {abs(plcc):.2f} over {len(pts)} groups", fontsize=9)
    else:
        ax.set_title(what, fontsize=9)
    ax.set_xlabel(f"mean {Q_LABELS.get(variant, variant)} of {scorer}")
    ax.set_ylabel(f"accuracy of {task_model}")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  title="corruption (size = severity)", title_fontsize=6, frameon=False)
    return ax


def scatter_grid(
    means: pd.DataFrame,
    task_model: str,
    panels: Sequence[tuple[str, str]],
    ncols: int | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Several scatter panels (``(scorer, variant)`` each) for one task model, one legend."""
    n = len(panels)
    ncols = ncols or min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 1.6, 3.2 * nrows), squeeze=False)
    for ax, (scorer, variant) in zip(axes.flat, panels, strict=False):
        scatter_accuracy_vs_q(means, task_model, scorer, variant, ax=ax, legend=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False,
               title="corruption\n(size = severity)", title_fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return fig


# No creation date in the files: the same figure gives the same bytes (and the same md5 in dvc.lock).
REPRODUCIBLE_METADATA = {"png": {}, "pdf": {"CreationDate": None}}


def save_figure(fig: plt.Figure, stem: str | os.PathLike, dpi: int = 150) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    try:
        for path in paths:
            fmt = path.suffix[1:]
            atomic_write_with(path, lambda tmp, f=fmt: fig.savefig(
                tmp, format=f, dpi=dpi, bbox_inches="tight", metadata=REPRODUCIBLE_METADATA[f]))
    finally:
        plt.close(fig)
    return paths


def _metric_label(scorer: str, q: str) -> str:
    return scorer if q == "q" else f"{scorer} {q}"


def bar_mean_auc(table: pd.DataFrame, task_model: str, ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Mean AUC per metric with one-standard-deviation error bars (Figure 20a/b).

    ``table`` is ``per_image.csv`` or ``per_label.csv``; the chance line is at 0.5.
    """
    rows = table[(table["task_model"] == task_model) & table["mean_auc"].notna()]
    rows = rows[rows["scorer"] != task_model].sort_values("mean_auc")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * max(len(rows), 4) + 1))
    labels = [_metric_label(s, q) for s, q in zip(rows["scorer"], rows["q"], strict=True)]
    colors = [_PALETTE[{"nr_iqa": 0, "classifier": 2, "zero_shot": 4}.get(k, 6)] for k in rows["kind"]]
    ax.barh(labels, rows["mean_auc"], xerr=rows["sd_auc"], color=colors, alpha=0.85,
            error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"mean AUC (5-fold CV), M = {task_model}")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return ax


def mixture_distributions(histogram: pd.DataFrame, metrics: Sequence[tuple[str, str]]) -> plt.Figure:
    """Distribution of Q per mixture, coloured by p_c, one panel per metric (Figure 21)."""
    n = len(metrics)
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 1.2, 2.8 * nrows), squeeze=False)
    fractions = sorted(histogram["p_c"].unique())
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.Normalize(min(fractions), max(fractions))
    for ax, (scorer, q) in zip(axes.flat, metrics, strict=False):
        h = histogram[(histogram["scorer"] == scorer) & (histogram["q"] == q)]
        for p_c, g in h.groupby("p_c"):
            centres = (g["bin_left"] + g["bin_right"]) / 2
            density = g["count"] / max(g["count"].sum(), 1)
            ax.plot(centres, density, color=cmap(norm(p_c)), lw=0.9)
        ax.set_title(_metric_label(scorer, q), fontsize=9)
        ax.set_xlabel(Q_LABELS.get(q, q))
        ax.set_ylabel("fraction of images")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes.ravel().tolist(), label="$p_c$ (fraction corrupted)", shrink=0.8)
    fig.suptitle("Distribution of each Q in mixtures of clean and mildly corrupted images, by fraction corrupted")
    return fig


def auc_vs_fraction(auc: pd.DataFrame, task_models: Sequence[str], metrics: Sequence[tuple[str, str]]) -> plt.Figure:
    """Point-wise AUC against p_c, one line per metric, one panel per task model (Figure 22)."""
    n = len(task_models)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 2, 3.6), squeeze=False, sharey=True)
    for ax, model in zip(axes.flat, task_models, strict=True):
        for i, (scorer, q) in enumerate(metrics):
            g = auc[(auc["task_model"] == model) & (auc["scorer"] == scorer) & (auc["q"] == q)]
            ax.plot(g["p_c"], g["auc"], marker="o", ms=2.5, lw=1, color=_PALETTE[i % len(_PALETTE)],
                    label=_metric_label(scorer, q))
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(f"M = {model}", fontsize=9)
        ax.set_xlabel("$p_c$ (fraction of images corrupted)")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("point-wise AUC")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.suptitle("Point-wise AUC of each Q for correctness vs the fraction of mildly corrupted images")
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    return fig
