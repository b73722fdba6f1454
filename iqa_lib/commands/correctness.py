"""``iqa-kit correctness``: how often a task model is right, where, and how well it knows it.

Every analysis rests on a task model's correctness M; this writes its tables once so the
sections read them instead of recomputing: ``accuracy.csv`` (top-1 per corruption and
severity), ``ce.csv`` (ImageNet-C CE, relative CE against AlexNet), ``calibration.csv``
(ECE of q_p), ``reliability.csv``, ``severity.csv`` (accuracy against severity),
``summary.json`` (six headline numbers with n) and three figures (PNG + PDF).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the analysis imports pandas and scipy: not at `iqa-kit --help`
    from iqa_lib.analysis.correctness import Correctness

CORRECTNESS_DIR = "results/correctness"  # one folder per task model
TABLES = ("accuracy", "ce", "calibration", "reliability", "severity")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "correctness",
        help="a task model's top-1, ImageNet-C CE/mCE and calibration: tables and figures",
        description="For one task model's score file: top-1 accuracy on clean images and per "
        "(corruption, severity); ImageNet-C corruption error CE per corruption and mCE, "
        "unnormalised and normalised by AlexNet's published errors, and relative mCE; ECE of "
        "q_p (15 equal-width bins) on clean and corrupted images with reliability diagrams; "
        "accuracy against severity per corruption. Writes accuracy.csv, ce.csv, "
        "calibration.csv, reliability.csv, severity.csv, summary.json and the figures.",
    )
    parser.add_argument("--scores", help="folder of <scorer>.parquet files from `iqa-kit score`")
    parser.add_argument("--model", required=True, help="the task model: a score file's stem, e.g. lite0")
    parser.add_argument(
        "--params",
        help="take the defaults from this params.yaml: results/scores and "
        f"{CORRECTNESS_DIR}/<model> (explicit options win); this is what dvc.yaml runs",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder for the tables and figures (default: <scores>/../correctness/<model>)",
    )
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing the same output, wait for it instead of stopping")
    parser.set_defaults(func=run)


def resolve_paths(
    model: str, scores: str | None = None, out: str | None = None, params: str | None = None
) -> tuple[Path, Path]:
    """(scores folder, output folder) as the command resolves them (the notebook too)."""
    if params:
        from iqa_lib.config import SCORES_DIR, load_params

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
    from iqa_lib.analysis.correctness import compute_correctness
    from iqa_lib.fileio import atomic_write_text, write_csv
    from iqa_lib.locks import output_lock
    from iqa_lib.presentation.plots import save_figure
    from iqa_lib.presentation.plots_correctness import FIGURES

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


def _pct(metric: dict) -> str:
    v = metric.get("value")
    return "-" if v is None else f"{100 * v:.1f}%"


def format_summary(result: Correctness) -> list[str]:
    """A few lines: top-1 clean / corrupted, mCE and relative mCE, ECE clean / corrupted."""
    s = result.summary
    lines = [
        f"{result.model}: top-1 clean {_pct(s['clean_top1'])} (n {s['clean_top1']['n']}), "
        f"corrupted {_pct(s['corrupted_top1'])} (n {s['corrupted_top1']['n']}, mean over groups)",
        f"  mCE {_pct(s['mce'])}, relative mCE {_pct(s['relative_mce'])} "
        f"(AlexNet = 100%, over {s['mce']['n']} corruption(s))",
        f"  ECE of q_p (15 bins): clean {_pct(s['ece_clean'])}, corrupted {_pct(s['ece_corrupted'])}",
    ]
    return lines + [f"  note: {n}" for n in result.notes]


def run(args: argparse.Namespace) -> int:
    scores, out = resolve_paths(args.model, args.scores, args.out, args.params)
    result, written = write_correctness(scores, args.model, out, wait=args.wait)
    print("\n".join(format_summary(result)))
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0
