"""The ``describe`` stage: how every quality variable Q is distributed over the scored images.

Before asking whether Q predicts correctness, users want to see what Q looks like on their
images and how it moves with ImageNet-C's corruptions. Writes ``q_distribution.csv`` (one row
per scorer, Q variable, corruption, severity) and ``q_distribution.png``/``.pdf``. Called by
``iqa-kit describe`` and by ``notebooks/describe.ipynb`` (the dvc stage) alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from iqa_lib.analysis.distribution import describe_and_summarize
from iqa_lib.config import DISTRIBUTION_DIR, SCORES_DIR, Params
from iqa_lib.fileio import write_csv
from iqa_lib.locks import output_lock
from iqa_lib.presentation.plots import save_figure
from iqa_lib.presentation.plots_distribution import q_distribution_figure

STEM = "q_distribution"


@dataclass(frozen=True)
class DescribeSettings:
    """Which score files to describe and where the table and figure go."""

    scores: str | os.PathLike  # a folder of <scorer>.parquet files from `iqa-kit score`
    scorers: tuple[str, ...] | None = None  # file stems to describe; None: every score file
    out: str | os.PathLike | None = None  # None: <scores>/../distribution
    bins: int = 50  # histogram bins, for one-group (clean-only) data
    wait: bool = False  # wait for another run writing the same output instead of stopping

    def __post_init__(self) -> None:
        if self.bins < 1:
            raise ValueError(f"bins must be at least 1, got {self.bins}")


@dataclass(frozen=True)
class Description:
    """What :func:`describe` computed and wrote."""

    table: pd.DataFrame  # one row per scorer, Q variable, corruption and severity
    summary: pd.DataFrame  # clean and pooled corrupted rows per Q variable
    out: Path
    files: list[Path]  # the CSV, then the PNG and the PDF


def settings_from_params(
    params: Params,
    scores: str | os.PathLike | None = None,
    scorers: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    bins: int = 50,
    wait: bool = False,
) -> DescribeSettings:
    """What the dvc stage runs: results/scores, the configured scorers, results/distribution;
    an explicit value wins over the one from the params."""
    return DescribeSettings(scores=scores or SCORES_DIR, scorers=tuple(scorers or params.scorers),
                            out=out or DISTRIBUTION_DIR, bins=bins, wait=wait)


def default_out(scores: str | os.PathLike) -> Path:
    """``<scores>/../distribution``, resolved so that a scores folder of ``.`` does not nest it."""
    return Path(scores).resolve().parent / "distribution"


def describe(settings: DescribeSettings) -> Description:
    """Compute the distribution table, write it and its figure under the output lock."""
    scorers = list(settings.scorers) if settings.scorers is not None else None
    table, summary = describe_and_summarize(settings.scores, scorers)
    if table.empty:
        raise ValueError(f"{settings.scores}: the score files have no rows; rescore the images")
    out = Path(settings.out) if settings.out else default_out(settings.scores)
    csv = out / f"{STEM}.csv"
    with output_lock(out, wait=settings.wait):
        out.mkdir(parents=True, exist_ok=True)
        write_csv(table, csv)
        fig = q_distribution_figure(settings.scores, table=table, bins=settings.bins)
        figures = save_figure(fig, out / STEM)
    return Description(table, summary, out, [csv, *figures])
