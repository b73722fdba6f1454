"""The (Q, M) overview heatmap: which quality variables predict which model's correctness."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import iqa_lib.presentation.plots  # noqa: F401  (selects the Agg backend)

LABELS = {"auc": "point-wise AUC", "srcc": "group-wise |SRCC|"}


def plot_overview_heatmap(grid: pd.DataFrame, value: str = "auc", ax: plt.Axes | None = None) -> plt.Axes:
    """A Q x M grid with each cell's value written in it (0.5 = chance for AUC)."""
    rows, cols = grid.shape
    ax = ax or plt.subplots(figsize=(1.2 * cols + 2.6, 0.32 * rows + 1.4))[1]
    data = grid.to_numpy(dtype=float)
    vmin, vmax = (0.5, 1.0) if value == "auc" else (0.0, 1.0)
    image = ax.imshow(data, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            if np.isfinite(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if data[i, j] < (vmin + vmax) / 2 else "black")
    ax.set_xticks(range(cols), grid.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(rows), grid.index, fontsize=8)
    ax.set_xlabel("task model M")
    ax.set_ylabel("quality variable Q")
    ax.set_title(f"{LABELS.get(value, value)} of every Q for every M", fontsize=10)
    ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    return ax
