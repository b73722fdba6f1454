"""The ``analyze`` stage: every analysis of the paper over a folder of score files, as CSV tables.

``iqa-kit analyze`` and ``notebooks/analysis.ipynb`` (what ``dvc.yaml`` runs) both call
:func:`analyze` with settings from :func:`analyze_settings`; the tables are those of
:func:`iqa_lib.analysis.runner.run_all`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from iqa_lib.analysis.runner import AnalysisOptions, run_all
from iqa_lib.config import ANALYSIS_DIR, SCORES_DIR, load_params
from iqa_lib.locks import output_lock

# options whose empty value means the built-in default (an empty list on the command line too)
EMPTY_MEANS_DEFAULT = ("mixture_fractions", "mixture_severities", "analyses")


@dataclass(frozen=True)
class AnalyzeSettings:
    """Where the stage reads and writes, and how the analyses run."""

    scores: str | Path
    out: str | Path
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    wait: bool = False  # wait for another run writing the same output instead of stopping


def _params_values(params_file: str) -> dict:
    """The stage's settings as ``params_file`` gives them: results/scores, results/analysis,
    the configured scorers and task models, and the analysis section."""
    params = load_params(params_file)
    a = params.analysis
    kinds = {name: params.scorer_spec(name).kind for name in params.scorers}
    if not kinds:
        raise ValueError(f"{params_file} configures no scorers: add some under 'scorers'")
    return {
        "scores": SCORES_DIR,
        "out": ANALYSIS_DIR,
        "seed": a.seed,
        "n_bootstrap": a.n_bootstrap,
        "test_fraction": a.test_fraction,
        "n_folds": a.n_folds,
        "task_models": list(a.task_models) or None,
        "scorers": list(kinds),
        "zero_shot": [n for n, k in kinds.items() if k == "zero_shot"],
        "mixture_fractions": list(a.mixture_fractions),
        "mixture_corruptions": list(a.mixture_corruptions or params.data.corruptions),
        "mixture_severities": list(a.mixture_severities),
    }


def analyze_settings(params_file: str | None = None, **explicit) -> AnalyzeSettings:
    """Settings from ``params_file``, overridden by every ``explicit`` value that is not None
    (a command line's options: ``scores``, ``out``, ``wait`` or a field of
    :class:`~iqa_lib.analysis.runner.AnalysisOptions`); the rest are the built-in defaults."""
    values = _params_values(params_file) if params_file else {}
    values.update({k: v for k, v in explicit.items() if v is not None})
    scores, out, wait = values.pop("scores", None), values.pop("out", None), values.pop("wait", False)
    if scores is None or out is None:
        raise ValueError("give --scores and --out, or --params params.yaml")
    for key in EMPTY_MEANS_DEFAULT:
        if key in values and not values[key]:
            del values[key]
    return AnalyzeSettings(scores, out, AnalysisOptions(**values), wait)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def analyze(settings: AnalyzeSettings, log: Callable[[str], object] = _to_stderr) -> dict[str, pd.DataFrame]:
    """Run every chosen analysis and write its tables under the output folder's lock.

    Progress and timings go to ``log`` (stderr: a notebook keeps them out of its report).
    """
    with output_lock(settings.out, wait=settings.wait):
        return run_all(settings.scores, settings.out, settings.options, log=log)
