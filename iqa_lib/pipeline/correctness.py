"""The ``correctness`` stage: a task model's top-1, ImageNet-C CE/mCE and calibration, written once.

Every analysis rests on a task model's correctness M; this writes its tables once so the
sections read them instead of recomputing: ``accuracy.csv`` (top-1 per corruption and
severity), ``ce.csv`` (ImageNet-C CE, relative CE against AlexNet), ``calibration.csv``
(ECE of q_p), ``reliability.csv``, ``severity.csv`` (accuracy against severity),
``summary.json`` (six headline numbers with n) and three figures (PNG + PDF).
``iqa-kit correctness`` and ``notebooks/correctness.ipynb`` both call :func:`write_correctness`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from iqa_lib.analysis.correctness import Correctness, compute_correctness
from iqa_lib.config import SCORES_DIR, load_params
from iqa_lib.fileio import atomic_write_text, write_csv
from iqa_lib.locks import output_lock
from iqa_lib.presentation.plots import save_figure
from iqa_lib.presentation.plots_correctness import FIGURES

CORRECTNESS_DIR = "results/correctness"  # one folder per task model
TABLES = ("accuracy", "ce", "calibration", "reliability", "severity")


def resolve_paths(
    model: str, scores: str | None = None, out: str | None = None, params: str | None = None
) -> tuple[Path, Path]:
    """(scores folder, output folder) from the options given, ``params`` filling the rest."""
    if params:
        loaded = load_params(params)
        if model not in loaded.scorers:
            raise ValueError(
                f"{params}: no scorer {model!r}; configured: {', '.join(loaded.scorers) or '(none)'}"
            )
        scores = scores or SCORES_DIR
        out = out or str(Path(CORRECTNESS_DIR) / model)
    if not scores:
        raise ValueError("give --scores DIR (a folder of <scorer>.parquet files) or --params")
    out_dir = Path(out) if out else Path(scores).resolve().parent / "correctness" / model
    return Path(scores), out_dir


def _json_ready(summary: dict) -> dict:
    return {k: {kk: (None if isinstance(v, float) and not math.isfinite(v) else v) for kk, v in d.items()}
            for k, d in summary.items()}


def write_correctness(
    scores: str | Path, model: str, out: str | Path, wait: bool = False, figures: bool = True
) -> tuple[Correctness, list[Path]]:
    """Compute every table of ``model`` and write tables, summary and figures into ``out``
    under its output lock; return the result and the paths written.

    ``figures=False`` writes the tables and summary only (what the sections read).
    """
    result = compute_correctness(scores, model)
    out = Path(out)
    written: list[Path] = []
    with output_lock(out, wait=wait):
        out.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            written.append(write_csv(getattr(result, name), out / f"{name}.csv"))
        text = json.dumps(_json_ready(result.summary), indent=2, allow_nan=False) + "\n"
        written.append(atomic_write_text(out / "summary.json", text))
        for stem, draw in FIGURES.items() if figures else ():
            written += save_figure(draw(result), out / stem)
    return result, written
