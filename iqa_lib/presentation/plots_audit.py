"""Figures of an audit report: where a dataset's quality sits against ImageNet and ImageNet-C.

Each figure is a function of tidy inputs (values, a :class:`Reference`, a
distances frame, a thumbnail list) that draws into axes it is given or makes,
so the report notebook and anyone exploring call the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

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


def plot_distances(
    distances: pd.DataFrame, ax: plt.Axes | None = None, title: str | None = None,
    informative: bool | None = None,
) -> plt.Axes:
    """Wasserstein-1 distance to each reference group; the closest group is outlined (dashed, and
    the title says so, when ``informative`` is False: the closest group is not to be read as a severity)."""
    ax = ax or plt.subplots(figsize=(4.2, 3.0))[1]
    groups = distances["group"].tolist()
    colors = severity_colors(groups)
    d = distances["wasserstein"].to_numpy(np.float64)
    best = int(np.nanargmin(d)) if np.isfinite(d).any() else -1
    bars = ax.bar(range(len(groups)), d, color=[colors[g] for g in groups])
    if best >= 0:
        bars[best].set_edgecolor(DATASET_COLOR if informative is not False else "#7f7f7f")
        bars[best].set_linewidth(2.5)
        if informative is False:
            bars[best].set_linestyle("--")
    ax.set_xticks(range(len(groups)), [g.replace("severity ", "s") for g in groups], fontsize=8)
    ax.set_ylabel("Wasserstein-1 distance")
    title = title or "distance to reference groups"
    if informative is False:
        title += "\n(closest not informative)"
    ax.set_title(title, fontsize=10)
    return ax


HEADLINE_STYLE = {
    "box": "border:2px solid #1f77b4;border-radius:6px;padding:10px 16px;margin:6px 0 14px 0;"
           "background:#f4f8fc;font-size:15px;line-height:1.45",
    "warn_box": "border:2px solid #c62828;border-radius:6px;padding:10px 16px;margin:6px 0 14px 0;"
                "background:#fff4f4;font-size:15px;line-height:1.45",
    "warn": "color:#b71c1c;font-weight:bold",
    "caveat": "font-size:13px;color:#444;margin-top:8px",
}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def headline_html(blocks: Mapping[str, Sequence[tuple[str, bool]]], caveat: str, empty: str = "") -> str:
    """The report's first screen: one box per task model (red when a sentence is a warning), its
    sentences in order (warnings in bold red), then the caveat. Inline styles only: nothing to load."""
    parts = ['<div style="font-size:19px;font-weight:bold;margin:4px 0">Accuracy to expect on these images</div>']
    for name, items in blocks.items():
        warn = any(w for _, w in items)
        lines = "".join(
            f'<li style="{HEADLINE_STYLE["warn"]}">{escape(_sentence(t))}</li>' if w
            else f"<li>{escape(_sentence(t))}</li>"
            for t, w in items
        )
        parts.append(
            f'<div style="{HEADLINE_STYLE["warn_box" if warn else "box"]}">'
            f'<div style="font-weight:bold;font-size:16px">{escape(name)}</div>'
            f'<ul style="margin:4px 0 0 0;padding-left:20px">{lines}</ul></div>'
        )
    if not blocks and empty:
        parts.append(f'<div style="{HEADLINE_STYLE["box"]}">{escape(empty)}</div>')
    parts.append(f'<div style="{HEADLINE_STYLE["caveat"]}"><b>Caveat.</b> {escape(caveat)}</div>')
    return "".join(parts)


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
