"""Figures of an audit report: where a dataset's quality sits against ImageNet and ImageNet-C.

Each figure is a function of tidy inputs (values, a :class:`Reference`, a
distances frame, a thumbnail list) that draws into axes it is given or makes,
so the report notebook and anyone exploring call the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from iqa_lib.audit.reference import CLEAN, Reference
from iqa_lib.presentation.plots import Q_LABELS  # also selects the Agg backend

DATASET_COLOR = "#d62728"


def severity_colors(groups: Sequence[str]) -> dict[str, tuple]:
    """Clean ImageNet black, severities 1-5 from light to dark blue."""
    cmap = plt.get_cmap("Blues")
    out: dict[str, tuple] = {}
    for g in groups:
        if g == CLEAN:
            out[g] = (0.0, 0.0, 0.0, 1.0)
        else:
            s = int(g.split()[-1])
            out[g] = cmap(0.3 + 0.14 * s)
    return out


def _bins(arrays: Sequence[np.ndarray], n: int = 60) -> np.ndarray:
    pooled = np.concatenate([a[np.isfinite(a)] for a in arrays if len(a)])
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def plot_reference_overlay(
    values: np.ndarray,
    reference: Reference | None,
    variable: str,
    ax: plt.Axes | None = None,
    title: str | None = None,
    dataset_label: str = "your images",
) -> plt.Axes:
    """The dataset's Q histogram over the reference's clean and per-severity distributions."""
    ax = ax or plt.subplots(figsize=(6, 3.4))[1]
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    groups = reference.groups(variable) if reference is not None else {}
    bins = _bins([x, *groups.values()])
    colors = severity_colors(list(groups))
    for group, ref in groups.items():
        ax.hist(np.clip(ref, bins[0], bins[-1]), bins=bins, density=True, histtype="step",
                lw=1.6 if group == CLEAN else 1.1, color=colors[group],
                label=f"ImageNet {group}" if group == CLEAN else f"ImageNet-C {group}")
    ax.hist(np.clip(x, bins[0], bins[-1]), bins=bins, density=True, color=DATASET_COLOR, alpha=0.35,
            label=f"{dataset_label} (n={len(x)})")
    ax.axvline(np.median(x), color=DATASET_COLOR, lw=1, ls="--")
    ax.set_xlabel(Q_LABELS.get(variable, variable))
    ax.set_ylabel("density")
    ax.set_title(title or variable, fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="best")
    if reference is None:
        ax.text(0.02, 0.95, "no reference for this scorer", transform=ax.transAxes, fontsize=8, va="top")
    return ax


def plot_distances(distances: pd.DataFrame, ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Wasserstein-1 distance to each reference group; the closest group is outlined."""
    ax = ax or plt.subplots(figsize=(4.2, 3.0))[1]
    groups = distances["group"].tolist()
    colors = severity_colors(groups)
    d = distances["wasserstein"].to_numpy(np.float64)
    best = int(np.nanargmin(d)) if np.isfinite(d).any() else -1
    bars = ax.bar(range(len(groups)), d, color=[colors[g] for g in groups])
    if best >= 0:
        bars[best].set_edgecolor(DATASET_COLOR)
        bars[best].set_linewidth(2.5)
    ax.set_xticks(range(len(groups)), [g.replace("severity ", "s") for g in groups], fontsize=8)
    ax.set_ylabel("Wasserstein-1 distance")
    ax.set_title(title or "distance to reference groups", fontsize=10)
    return ax


def thumbnail_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], title: str, columns: int = 8
) -> plt.Figure:
    """Thumbnails in a grid with one caption each (values, class)."""
    n = max(1, len(images))
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.35, rows * 1.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, captions, strict=False):
        ax.imshow(img)
        ax.set_title(cap, fontsize=6.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_class_quality(
    table: pd.DataFrame, variable: str, ax: plt.Axes | None = None, top: int = 15, title: str | None = None
) -> plt.Axes:
    """Median Q of the worst ``top`` classes (the table comes worst first)."""
    t = table.head(top).iloc[::-1]
    ax = ax or plt.subplots(figsize=(5, 0.25 * len(t) + 1))[1]
    ax.barh(t["class"].astype(str), t["median"], color="#7f7f7f")
    ax.set_xlabel(f"median {Q_LABELS.get(variable, variable)}")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title or "classes with the lowest median quality", fontsize=10)
    return ax
