"""Figures of a task model's correctness: reliability, accuracy against severity, CE.

Each function draws one tidy table of :mod:`iqa_lib.analysis.correctness` into the axes it
is given (or a new figure), so a notebook cell and ``iqa-kit correctness`` draw the same
picture; titles name what is plotted and the model.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # figures are written to files; notebooks display them inline anyway

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from iqa_lib.analysis.correctness import CORRUPTED, Correctness  # noqa: E402
from iqa_lib.analysis.io import CLEAN  # noqa: E402
from iqa_lib.presentation.plots import corruption_colors  # noqa: E402

SUBSET_NAMES = {CLEAN: "clean images", CORRUPTED: "corrupted images (pooled)"}


def _axes(ax: plt.Axes | None, size: tuple[float, float]) -> plt.Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def reliability_diagram(
    reliability: pd.DataFrame, subset: str, model: str, ece: float = math.nan, ax: plt.Axes | None = None
) -> plt.Axes:
    """Accuracy per confidence bin (bars) against the diagonal, for ``subset`` (clean or
    corrupted); the bar's width is the bin, its shade the share of images in it."""
    ax = _axes(ax, (4.2, 4.2))
    rows = reliability[(reliability["subset"] == subset) & (reliability["n"] > 0)]
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    if len(rows):
        share = rows["n"] / rows["n"].sum()
        alpha = 0.35 + 0.65 * (share / share.max()).to_numpy()
        width = (rows["upper"] - rows["lower"]).to_numpy()
        colors = [(0.12, 0.47, 0.71, a) for a in alpha]
        ax.bar(rows["lower"], rows["accuracy"], width=width, align="edge", color=colors,
               edgecolor="white", linewidth=0.5, label="accuracy in bin")
        ax.plot(rows["confidence"], rows["accuracy"], "o", ms=3, color="black",
                label="(mean confidence, accuracy)")
    name = SUBSET_NAMES.get(subset, subset)
    n = int(rows["n"].sum()) if len(rows) else 0
    ece_text = "n/a" if not np.isfinite(ece) else f"{ece:.3f}"
    ax.set_title(f"Reliability of {model}'s $Q_p$ on {name}\nECE (15 bins) {ece_text}, n = {n}", fontsize=9)
    ax.set_xlabel("confidence $Q_p$ (max softmax)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    return ax


def reliability_figure(result: Correctness) -> plt.Figure:
    """Clean and corrupted reliability diagrams side by side, ECE in each title."""
    subsets = [s for s in (CLEAN, CORRUPTED) if (result.reliability["subset"] == s).any()]
    fig, axes = plt.subplots(1, max(len(subsets), 1), figsize=(4.4 * max(len(subsets), 1), 4.6), squeeze=False)
    for ax, subset in zip(axes.flat, subsets, strict=False):
        reliability_diagram(result.reliability, subset, result.model, result.ece(subset), ax=ax)
    if not subsets:
        axes.flat[0].set_title(f"{result.model}: no rows to show calibration")
    fig.tight_layout()
    return fig


def accuracy_vs_severity(curves: pd.DataFrame, model: str, ax: plt.Axes | None = None) -> plt.Axes:
    """Top-1 accuracy against severity, one line per corruption (severity 0 = clean)."""
    ax = _axes(ax, (6.4, 4.2))
    names = list(dict.fromkeys(curves["corruption"]))
    colors = corruption_colors(names)
    for corruption, g in curves.groupby("corruption", sort=False):
        g = g.sort_values("severity")
        ax.plot(g["severity"], g["accuracy"], marker="o", ms=3, lw=1.2, color=colors[corruption],
                label=corruption.replace("_", " "))
    ax.set_title(f"Top-1 accuracy of {model} against corruption severity (0 = clean)", fontsize=9)
    ax.set_xlabel("severity")
    ax.set_ylabel(f"top-1 accuracy of {model}")
    sev = sorted(set(curves["severity"])) if len(curves) else [0]
    ax.set_xticks(sev)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="corruption",
                  title_fontsize=7)
    return ax


def ce_bars(ce: pd.DataFrame, model: str, mce: float = math.nan, ax: plt.Axes | None = None) -> plt.Axes:
    """CE per corruption (AlexNet = 1) as bars with the mCE line; without any normalised CE,
    the unnormalised CE (mean error over severities) instead, and the title says so."""
    ax = _axes(ax, (6.4, 4.2))
    normalised = ce["ce"].notna().any()
    col = "ce" if normalised else "error_mean"
    rows = ce[ce[col].notna()]
    colors = corruption_colors(list(rows["corruption"]))
    x = np.arange(len(rows))
    ax.bar(x, rows[col], color=[colors[c] for c in rows["corruption"]], alpha=0.9)
    ax.set_xticks(x, [c.replace("_", " ") for c in rows["corruption"]], rotation=60, ha="right", fontsize=7)
    if normalised:
        ax.axhline(1.0, color="grey", lw=0.8, ls=":", label="AlexNet (CE = 1)")
        if np.isfinite(mce):
            ax.axhline(mce, color="black", lw=1.0, ls="--", label=f"mCE {100 * mce:.1f}%")
        ax.set_ylabel("corruption error CE (AlexNet = 1)")
        ax.set_title(f"ImageNet-C corruption error of {model}, normalised by AlexNet", fontsize=9)
        ax.set_ylim(0, max(1.2, 1.1 * float(rows[col].max())))
        ax.legend(fontsize=7, frameon=False, loc="upper left", ncol=2)
    else:
        ax.set_ylabel("mean top-1 error over severities")
        ax.set_title(f"Unnormalised corruption error of {model} (no AlexNet-normalised CE: "
                     "needs the 15 ImageNet-C corruptions at severities 1-5)", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return ax


def severity_figure(result: Correctness) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    accuracy_vs_severity(result.severity, result.model, ax=ax)
    fig.tight_layout()
    return fig


def ce_figure(result: Correctness) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    ce_bars(result.ce, result.model, result.summary.get("mce", {}).get("value") or math.nan, ax=ax)
    fig.tight_layout()
    return fig


FIGURES = {"reliability": reliability_figure, "accuracy_vs_severity": severity_figure, "ce": ce_figure}
