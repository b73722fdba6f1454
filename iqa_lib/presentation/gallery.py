"""The paper's figures in the paper's order, with captions: what the figures notebook shows.

The section stages draw every figure (PNG and PDF under ``results/figures/<section>/``);
the gallery only finds them and says, for each figure of the paper, what it plots in this
run's setting, or why it is missing (the section's ``NOTE.md``, or the scorers it needs).
Figures whose task model varies carry the model in the file name (``fig11_<model>``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class PaperFigure:
    """One figure (or set of per-model figures) of the paper and where its section writes it."""

    numbers: tuple[int, ...]  # the paper's figure numbers this entry covers
    section: str  # folder under results/figures
    caption: str  # what it plots, in our terms (the paper's setting in brackets)
    needs: str  # the scorers it needs, said when it is missing


PAPER_FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure((3,), "section4_nr_iqa",
                "Accuracy of the main task model against the main no-reference IQA metric, one point per "
                "(corruption, severity) group, the mean over its images (paper: ConvNeXt-B vs CLIP-IQA).",
                "a no-reference IQA scorer, a task model and ImageNet-C groups"),
    PaperFigure((5,), "section5_strong_tg",
                "Accuracy of the main task model against another classifier's max logit Q_l, one point per "
                "group (paper: ConvNeXt-B vs Swin-B's Q_l).",
                "two classifiers and ImageNet-C groups"),
    PaperFigure((7,), "section6_zsclip",
                "Accuracy of the main task model against ZSCLIP-IQA's Q_l, one point per group "
                "(paper: ConvNeXt-B).",
                "a zero-shot CLIP scorer (open_clip:<arch>/<pretrained>) and ImageNet-C groups"),
    PaperFigure((11, 12, 13), "section4_nr_iqa",
                "Each task model's accuracy against every no-reference IQA metric, one panel per metric "
                "(paper: ConvNeXt-B, Swin-B, ResNet-34 vs ARNIQA, BRISQUE, CLIP-IQA, TV).",
                "no-reference IQA scorers, task models and ImageNet-C groups"),
    PaperFigure((14, 15, 16), "section5_strong_tg",
                "Each task model's accuracy against the other classifiers' Q_h, Q_l and Q_p (rows), one "
                "column per other classifier; with one classifier, its own confidence (the title says so).",
                "classifiers and ImageNet-C groups"),
    PaperFigure((17, 18, 19), "section6_zsclip",
                "Each task model's accuracy against ZSCLIP-IQA's Q_h, Q_l and Q_p.",
                "a zero-shot CLIP scorer and ImageNet-C groups"),
    PaperFigure((20,), "appendix_g_content",
                "Content held fixed: mean 5-fold cross-validated AUC of each Q for a task model's "
                "correctness, (a) within one image ID's variants, (b) within one label; error bars one "
                "standard deviation.",
                "a task model and more than one row per image ID and label"),
    PaperFigure((21,), "section6_3_mixtures",
                "Distribution of each Q in every mild-corruption mixture, coloured by the fraction p_c of "
                "corrupted images, one panel per metric.",
                "clean images and corrupted copies at severities 1-3"),
    PaperFigure((22,), "section6_3_mixtures",
                "Point-wise AUC of each Q against the mixture fraction p_c, one line per metric, one panel "
                "per task model.",
                "clean images and corrupted copies at severities 1-3"),
)

_FILE = re.compile(r"fig(\d\d)_")


def _note(folder: Path) -> str | None:
    note = folder / "NOTE.md"
    if not note.is_file():
        return None
    lines = [line for line in note.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return " ".join(lines) or None


def _drawn(folder: Path, numbers: tuple[int, ...]) -> dict[int, list[Path]]:
    """The PNGs in ``folder`` of each of the paper's figure ``numbers`` (several per model)."""
    found: dict[int, list[Path]] = {}
    for png in sorted(folder.glob("fig*.png")):
        match = _FILE.match(png.name)
        if match and int(match.group(1)) in numbers:
            found.setdefault(int(match.group(1)), []).append(png)
    return found


def _why_missing(entry: PaperFigure, folder: Path, found: dict[int, list[Path]]) -> str:
    """Why a figure of ``entry`` was not drawn: no section run, the section's note, or the scorers."""
    if not folder.is_dir():
        return f"{folder} does not exist: run `dvc repro section@{entry.section}`"
    if len(entry.numbers) > 1 and found:
        return (f"the paper draws Figures {entry.numbers[0]}-{entry.numbers[-1]} for three "
                f"task models; this run configures {len(found)}")
    return _note(folder) or f"not drawn in this run: it needs {entry.needs}"


def gallery(figures_dir: str | os.PathLike = "results/figures") -> pd.DataFrame:
    """One row per paper figure number, in the paper's order: its PNG(s), caption, or why missing.

    Columns: figure, section, caption, png (path or None), missing (why, or None).
    """
    figures_dir = Path(figures_dir)
    rows = []
    for entry in PAPER_FIGURES:
        folder = figures_dir / entry.section
        found = _drawn(folder, entry.numbers)
        for number in entry.numbers:
            pngs = found.get(number, [])
            why = None if pngs else _why_missing(entry, folder, found)
            for png in pngs or [None]:
                rows.append({"figure": number, "section": entry.section, "caption": entry.caption,
                             "png": png, "missing": why})
    return pd.DataFrame(rows, columns=["figure", "section", "caption", "png", "missing"])


CAVEAT_FILE = "CAVEAT.md"  # what the section stages write beside their figures when the run is a demo


def run_caveat(figures_dir: str | os.PathLike = "results/figures") -> str | None:
    """The run's caveat (a demo, or too few images for findings) as the sections wrote it, if any."""
    for folder in sorted(Path(figures_dir).glob("*")):
        caveat = folder / CAVEAT_FILE
        if caveat.is_file():
            return caveat.read_text().strip() or None
    return None
