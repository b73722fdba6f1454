"""The ``figures`` stage: the paper's figures in the paper's order, as the section stages drew them.

``notebooks/figures.ipynb`` (the dvc stage) shows what :func:`paper_figures` finds: each figure
with its caption, or why this run could not draw it, under the run's caveat if it has one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from iqa_lib.presentation.gallery import gallery, run_caveat


@dataclass(frozen=True)
class PaperFigures:
    """The gallery of a run."""

    caveat: str | None  # a demo, or too few images for findings: said before any figure
    figures: pd.DataFrame  # figure, section, caption, png (path or None), missing (why, or None)


def paper_figures(figures_dir: str | os.PathLike = "results/figures") -> PaperFigures:
    """Every figure of the paper the sections drew under ``figures_dir``, and the run's caveat."""
    return PaperFigures(run_caveat(figures_dir), gallery(figures_dir))
