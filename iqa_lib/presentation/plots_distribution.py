"""How each quality metric is distributed over a dataset, one panel per Q variable.

A panel with one group (your own clean images) is a histogram with the median and the
5%/95% quantiles marked; a panel with several groups (ImageNet-C) shows the median Q and its
25-75% band against severity, one line per corruption starting from the shared clean value,
so a reader sees at a glance how each metric moves with each corruption. Which direction of
Q is "better" differs between metrics, so axes only name the variable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from iqa_lib.analysis.distribution import describe_scores, describe_scoreset, iter_scoresets
from iqa_lib.analysis.io import CLEAN, ScoreSet
from iqa_lib.presentation.plots import Q_LABELS, corruption_colors  # also selects the Agg backend

MAX_COLUMNS = 4


def variable_name(scorer: str, q: str) -> str:
    """``brisque.q``, ``resnet34.q_p``: how the figure and the summary name a Q variable."""
    return f"{scorer}.{q}"


def parse_variable(name: str | tuple[str, str]) -> tuple[str, str]:
    """``"resnet34.q_p"`` or ``("resnet34", "q_p")`` -> (scorer, q); ``"brisque"`` -> q."""
    if isinstance(name, tuple):
        return name
    scorer, dot, q = name.rpartition(".")
    if dot and q in ("q", *Q_LABELS):
        return scorer, q
    return name, "q"


def _axis_label(scorer: str, q: str) -> str:
    name = variable_name(scorer, q)
    return name if q == "q" else f"{name}: {Q_LABELS.get(q, q)}"


def _values(source: str | Path | ScoreSet, loaded: dict, scorer: str, q: str) -> np.ndarray:
    """Raw Q of one variable; a score file is read once per figure (``loaded`` caches it)."""
    if isinstance(source, ScoreSet):
        scores = source
    else:
        if scorer not in loaded:
            (loaded[scorer],) = iter_scoresets(source, [scorer])
        scores = loaded[scorer]
    return np.asarray(scores.q[(scorer, q)], dtype=np.float64)


def _histogram(ax: plt.Axes, values: np.ndarray, row: pd.Series, bins: int, label: str) -> None:
    group = row["corruption"] if row["corruption"] == CLEAN else (
        f"{row['corruption']} severity {row['severity']}"
    )
    bins = min(bins, max(10, int(2 * np.sqrt(values.size))))  # not 50 bins for 20 images
    ax.hist(values, bins=bins, color="#4c72b0", alpha=0.8,
            label=f"{group} images (n = {int(row['n'])})")
    ax.axvline(row["q50"], color="black", lw=1.4, label=f"median {row['q50']:.4g}")
    ax.axvline(row["q05"], color="#c44e52", lw=1.0, ls="--",
               label=f"5% / 95%: {row['q05']:.4g} / {row['q95']:.4g}")
    ax.axvline(row["q95"], color="#c44e52", lw=1.0, ls="--")
    ax.set_xlabel(label)
    ax.set_ylabel("number of images")
    ax.legend(fontsize=7, frameon=False)


def _severity_lines(ax: plt.Axes, rows: pd.DataFrame, label: str) -> None:
    clean = rows[rows["corruption"] == CLEAN]
    corrupted = rows[rows["corruption"] != CLEAN]
    names = list(dict.fromkeys(corrupted["corruption"]))  # table order: ImageNet-C order
    colors = corruption_colors(names)
    start = clean.iloc[[0]].assign(severity=0) if len(clean) else None
    for name in names:
        g = corrupted[corrupted["corruption"] == name].sort_values("severity")
        if start is not None:
            g = pd.concat([start, g])
        x = g["severity"].to_numpy()
        ax.fill_between(x, g["q25"], g["q75"], color=colors[name], alpha=0.08, lw=0)
        ax.plot(x, g["q50"], marker="o", ms=3, lw=1.2, color=colors[name],
                label=name.replace("_", " "))
    if start is not None:
        ax.axhline(start["q50"].iloc[0], color="black", lw=0.8, ls=":", label="clean median")
    ax.set_xticks(sorted({0, *rows["severity"].astype(int)}))
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel(f"median {label}\n(band: 25-75% quantiles)", fontsize=8)
    ax.grid(alpha=0.3)


def groups_text(table: pd.DataFrame) -> str:
    """"clean + 15 corruption(s), severities 1-5": what groups a table holds, in words."""
    groups = table[["corruption", "severity"]].drop_duplicates()
    corrupted = groups[groups["corruption"] != CLEAN]
    has_clean = len(corrupted) < len(groups)
    if corrupted.empty:
        return "clean images" if has_clean else f"{len(groups)} group(s)"
    n_cor = corrupted["corruption"].nunique()
    sevs = sorted(corrupted["severity"].unique())
    sev_text = f"severities {sevs[0]}-{sevs[-1]}" if len(sevs) > 1 else f"severity {sevs[0]}"
    return ("clean + " if has_clean else "") + f"{n_cor} corruption(s), {sev_text}"


def _statistics(source: str | Path | ScoreSet, wanted: list[tuple[str, str]] | None) -> pd.DataFrame:
    """The distribution table of ``source`` (of the ``wanted`` scorers' files only, from a folder)."""
    if isinstance(source, ScoreSet):
        return describe_scoreset(source)
    scorers = list(dict.fromkeys(s for s, _ in wanted)) if wanted else None
    return describe_scores(source, scorers)


def _variables(table: pd.DataFrame, wanted: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The (scorer, q) panels to draw: ``wanted``, or every one of the table; each must be in it."""
    available = list(dict.fromkeys(zip(table["scorer"], table["q"], strict=True)))
    wanted = wanted if wanted is not None else available
    missing = [variable_name(*v) for v in wanted if v not in available]
    if missing:
        raise KeyError(
            f"no scores for {missing}; available: {[variable_name(*v) for v in available]}"
        )
    if not wanted:
        raise ValueError("no Q variables to plot: the score table is empty")
    return wanted


def _draw_panels(axes: np.ndarray, source: str | Path | ScoreSet, table: pd.DataFrame,
                 wanted: list[tuple[str, str]], bins: int) -> plt.Axes | None:
    """One panel per variable; returns the first severity panel (whose legend the figure shows)."""
    legend_ax = None
    loaded: dict = {}
    for ax, (scorer, q) in zip(axes.flat, wanted, strict=False):
        rows = table[(table["scorer"] == scorer) & (table["q"] == q)]
        label = _axis_label(scorer, q)
        if len(rows) == 1:
            _histogram(ax, _values(source, loaded, scorer, q), rows.iloc[0], bins, label)
        else:
            _severity_lines(ax, rows, label)
            legend_ax = legend_ax or ax
        ax.set_title(variable_name(scorer, q), fontsize=10)
    for ax in list(axes.flat)[len(wanted):]:
        ax.set_visible(False)
    return legend_ax


def _default_title(source: str | Path | ScoreSet, table: pd.DataFrame) -> str:
    name = "/".join(Path(source).resolve().parts[-2:]) if not isinstance(source, ScoreSet) else ""
    where = f" of {name}" if name else ""
    return f"Quality distribution{where}: {groups_text(table)}"


def q_distribution_figure(
    source: str | Path | ScoreSet,
    variables: Sequence[str | tuple[str, str]] | None = None,
    *,
    table: pd.DataFrame | None = None,
    bins: int = 50,
    title: str | None = None,
) -> plt.Figure:
    """One panel per Q variable (default: all), at most 4 per row (see the module docstring).

    ``source`` is a scores folder or a loaded ScoreSet; ``table`` (from
    :func:`~iqa_lib.analysis.distribution.describe_scores`) saves recomputing the statistics.
    Raw values are read again only for histogram panels (single-group data).
    """
    wanted = [parse_variable(v) for v in variables] if variables is not None else None
    if table is None:
        table = _statistics(source, wanted)
    wanted = _variables(table, wanted)
    ncols = min(len(wanted), MAX_COLUMNS)
    nrows = int(np.ceil(len(wanted) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols + 1.8, 3.2 * nrows),
                             squeeze=False)
    legend_ax = _draw_panels(axes, source, table, wanted, bins)
    fig.suptitle(title or _default_title(source, table))
    right = 1.0
    if legend_ax is not None:
        handles, labels = legend_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False,
                   title="corruption", title_fontsize=8)
        right = 1 - 1.6 / fig.get_figwidth()
    fig.tight_layout(rect=(0, 0, right, 1))
    return fig
