"""The ``prior`` stage: validate accuracy priors by leaving one corruption out, write tables and figures.

Leave-one-corruption-out over a folder of score files: every estimator of
:mod:`iqa_lib.analysis.prior.estimators` (Q-prior and Q-line on each Q; AC, DoC, ATC, a COT approximation
from the task model's own outputs; COT, MaNo, the nuclear norm and ALine from kept logits) is
fitted on clean + the other corruptions and predicts each severity group of the held-out one
and its severities pooled. Writes ``prior.csv`` (one row per group or pooled set and
estimator), ``prior_summary.csv`` (mean / max absolute error with bootstrap intervals, the
pooled sets' mean apart),
``prior_verdict.csv`` and a figure per task model (PNG + PDF). ``iqa-kit prior`` and
``notebooks/prior.ipynb`` both call :func:`write_prior`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from iqa_lib import defaults
from iqa_lib.analysis.prior.validation import LocoUnsupported, run_prior, verdict
from iqa_lib.config import SCORES_DIR, load_params
from iqa_lib.fileio import atomic_write_text, write_csv
from iqa_lib.locks import output_lock
from iqa_lib.presentation.plots_prior import save_prior_figures

PRIOR_DIR = "results/prior"  # its own DVC output: results/analysis belongs to `analyze`


@dataclass(frozen=True)
class PriorSettings:
    """What the stage reads, how it resamples, and where it writes."""

    scores: str | Path
    out: str | Path
    task_models: list[str] | None = None  # None: every labelled classifier/zero-shot file
    scorers: list[str] | None = None  # None: every score file
    seed: int = defaults.SEED
    n_bootstrap: int = defaults.N_BOOTSTRAP
    level: float = defaults.LEVEL
    figures: bool = True
    wait: bool = False  # wait for another run writing the same output instead of stopping
    # the pipeline's way: data that cannot support the validation writes empty tables and
    # NOTE.md saying why, as the other stages do; alone, the stage says why and stops
    note_unsupported: bool = False


def _params_defaults(params_file: str) -> dict:
    params = load_params(params_file)
    a = params.analysis
    return {"scores": SCORES_DIR, "out": PRIOR_DIR, "seed": a.seed, "n_bootstrap": a.n_bootstrap,
            "task_models": list(a.task_models) or None, "scorers": list(params.scorers) or None}


def prior_settings(params_file: str | None = None, **explicit) -> PriorSettings:
    """Settings from ``params_file`` (results/scores, results/prior, the configured scorers,
    analysis.task_models / seed / n_bootstrap), overridden by every ``explicit`` value that is
    not None (a command line's options); with a params file, unsupported data gets a note."""
    values = _params_defaults(params_file) if params_file else {}
    values.update({k: v for k, v in explicit.items() if v is not None})
    if values.get("scores") is None or values.get("out") is None:
        raise ValueError("give --scores and --out, or --params params.yaml")
    return PriorSettings(**values, note_unsupported=bool(params_file))


def _compute(settings: PriorSettings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str | None]:
    """(table, summary, verdict, note): the note says why nothing was computed."""
    try:
        table, summary = run_prior(settings.scores, settings.task_models, settings.scorers,
                                   n_bootstrap=settings.n_bootstrap, seed=settings.seed, level=settings.level)
        v = verdict(summary, table, n_bootstrap=settings.n_bootstrap, seed=settings.seed, level=settings.level)
    except LocoUnsupported as exc:
        if not settings.note_unsupported:
            raise
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), f"Not computed: {exc}."
    return table, summary, v, None


def write_prior(settings: PriorSettings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[Path]]:
    """Compute the validation and write every output under the output lock.

    Returns (table, summary, verdict, written paths).
    """
    out = Path(settings.out)
    table, summary, v, note = _compute(settings)
    written = []
    with output_lock(out, wait=settings.wait):
        out.mkdir(parents=True, exist_ok=True)
        if note:
            written.append(atomic_write_text(out / "NOTE.md", f"# Accuracy prior\n\n{note}\n"))
        else:
            (out / "NOTE.md").unlink(missing_ok=True)
        written.append(write_csv(table, out / "prior.csv"))
        written.append(write_csv(summary, out / "prior_summary.csv"))
        written.append(write_csv(v, out / "prior_verdict.csv"))
        if settings.figures and not summary.empty:
            written += save_prior_figures(table, summary, out)
    return table, summary, v, written
