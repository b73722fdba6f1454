"""The ``section`` stage: one paper section's tables, figures, claims and metrics.

``dvc.yaml`` runs a section's notebook (``notebooks/<section>.ipynb``): it opens the section
with :func:`open_section`, fills it cell by cell with the functions of its module in
:mod:`iqa_lib.presentation.sections` (so a reader sees each table and figure as it is made) and
finishes it. :func:`run_section` runs a whole section in one call (scripts, tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from iqa_lib.config import ANALYSIS_DIR, Params
from iqa_lib.presentation.sections import SECTIONS
from iqa_lib.presentation.sections.base import Context, Section, make_context, new_section


@dataclass(frozen=True)
class SectionSettings:
    """What a section reads and where it writes: the section notebooks' papermill parameters."""

    params: Params
    analysis_dir: str | os.PathLike = ANALYSIS_DIR  # the tables `iqa-kit analyze` wrote
    results_dir: str | os.PathLike = "results"  # tables/, figures/ and metrics/ go under it
    correctness_dir: str | os.PathLike | None = None  # default: <results_dir>/correctness

    def context(self) -> Context:
        return make_context(self.params, self.analysis_dir, self.results_dir, self.correctness_dir)


def open_section(name: str, settings: SectionSettings) -> tuple[Context, Section]:
    """The context and the empty section a notebook fills cell by cell (unavailable, with why,
    when its scorers are not configured)."""
    _check_name(name)
    ctx = settings.context()
    return ctx, new_section(ctx, name)


def run_section(name: str, settings: SectionSettings) -> Section:
    """The whole section in one call: every table, figure and claim, the note and the metrics file."""
    _check_name(name)
    return SECTIONS[name](settings.context())


def _check_name(name: str) -> None:
    if name not in SECTIONS:
        raise ValueError(f"no section {name!r}; the sections are {', '.join(SECTIONS)}")
