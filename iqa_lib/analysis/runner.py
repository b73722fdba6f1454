"""Run every analysis over a folder of score files and write tidy CSV tables.

What ``iqa-kit analyze`` and the analysis notebooks call, so anyone with the score files
(no DVC, no models) gets every number. Tables written to ``out_dir``:

=============================  =======================================================
groupwise_means.csv            accuracy and mean Q per (corruption, severity)
groupwise_correlations.csv     KRCC/SRCC/PLCC with p-values and bootstrap CIs
pointwise.csv                  80/20 split by image ID: AUC, AUC_raw, CE with CIs
summary.csv                    point-wise and group-wise side by side (Tables 1-3)
pairs.csv                      Q from classifier A, M from classifier B (Tables 2, 4)
paired_tests.csv               every pair of Q per task model: AUC difference (clustered
                               DeLong, paired bootstrap), |SRCC| difference (paired
                               bootstrap), Holm-adjusted p-values, significance marks
per_label.csv                  per-label CV: mean/sd AUC and CE, skipped-fold counts
per_image.csv                  per-image-ID CV, same columns
mixtures_auc.csv               point-wise AUC per mixture fraction p_c
mixtures_summary.csv           mean AUC over mixtures
mixtures_quantiles.csv         Q quantiles per mixture
mixtures_histogram.csv         Q histogram per mixture
analysis_params.json           the options used, and ``skipped``: analyses the data
                               cannot support, with the reason
=============================  =======================================================

Every AUC and correlation table carries its n beside its interval (test images, per
class, or groups) and a boolean ``small_n`` column: the one rule is in
:mod:`iqa_lib.analysis.sample_size`.

Data without ImageNet-C (your own clean images) still gets every analysis it supports:
with fewer than 3 (corruption, severity) groups the group-wise correlations are skipped
(the summary's group-wise columns are then empty), without clean and corrupted rows the
mixtures are. Nothing else is skipped silently: bad input still raises.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib import defaults
from iqa_lib.analysis.content import per_image, per_label
from iqa_lib.analysis.groupwise import MIN_GROUPS, group_codes, group_means, groupwise
from iqa_lib.analysis.io import ScoreSet, load_scores
from iqa_lib.analysis.mixtures import DEFAULT_FRACTIONS, DEFAULT_SEVERITIES, mixtures
from iqa_lib.analysis.paired import paired_tests
from iqa_lib.analysis.pairs import pairs, summary_table
from iqa_lib.analysis.pointwise import auc_work, pointwise
from iqa_lib.fileio import atomic_write_text, write_csv

ANALYSES = ("groupwise", "pointwise", "paired", "per_label", "per_image", "mixtures")


def unsupported(
    scores, analyses, include_clean_group: bool = False, mixture_severities=DEFAULT_SEVERITIES
) -> dict[str, str]:
    """Analyses of ``analyses`` these scores cannot support, each with the reason."""
    why: dict[str, str] = {}
    if "groupwise" in analyses:
        n_groups = group_codes(scores, include_clean_group)[1].shape[0]
        if n_groups < MIN_GROUPS:
            why["groupwise"] = (
                f"group-wise correlations need at least {MIN_GROUPS} (corruption, severity) groups; "
                f"these scores have {n_groups}{'' if include_clean_group else ' besides the clean images'}"
            )
    if "mixtures" in analyses:
        clean = scores.clean_mask()
        mild = ~clean & np.isin(scores.severity, list(mixture_severities))
        if not clean.any() or not mild.any():
            why["mixtures"] = (
                "mixtures need clean images and corrupted copies at severities "
                f"{list(mixture_severities)}; these scores have "
                f"{int(clean.sum())} clean and {int(mild.sum())} such corrupted rows"
            )
    return why


@dataclass(frozen=True)
class AnalysisOptions:
    """How :func:`run_all` runs: resampling, splits, which score files and which analyses.

    ``task_models``: score files whose ``correct`` column is M (default: every classifier and
    zero-shot file). ``scorers``: score files to load (default: all). ``zero_shot``: task
    files to treat as zero-shot (weak task-guided), overriding the file's metadata or name
    (see :func:`iqa_lib.analysis.io.scorer_kind`); it only decides which files the
    classifier-pairs table leaves out.
    """

    seed: int = defaults.SEED
    n_bootstrap: int = defaults.N_BOOTSTRAP
    level: float = defaults.LEVEL
    test_fraction: float = defaults.TEST_FRACTION
    n_folds: int = defaults.N_FOLDS
    task_models: Sequence[str] | None = None
    scorers: Sequence[str] | None = None
    zero_shot: Sequence[str] | None = None
    mixture_fractions: Sequence[float] = DEFAULT_FRACTIONS
    mixture_corruptions: Sequence[str] | None = None
    mixture_severities: Sequence[int] = DEFAULT_SEVERITIES
    include_clean_group: bool = False
    analyses: Sequence[str] = ANALYSES
    progress: bool = True


@dataclass(frozen=True)
class _Run:
    """One run's loaded scores, options, skipped analyses and log."""

    scores: ScoreSet
    options: AnalysisOptions
    skipped: dict[str, str]
    log: Callable[[str], object]

    def wants(self, name: str) -> bool:
        return name in self.options.analyses

    def timed(self, name: str, func: Callable[[], pd.DataFrame]):
        """``func()``, its wall time logged under ``name``."""
        t = time.perf_counter()
        result = func()
        self.log(f"{name}: {time.perf_counter() - t:.1f}s")
        return result


def _load(scores_dir: str | Path, o: AnalysisOptions, log: Callable[[str], object], t0: float) -> ScoreSet:
    """The scores, the ``zero_shot`` override applied and the task models checked."""
    scores = load_scores(scores_dir, o.scorers)
    for name in o.zero_shot or []:
        if scores.kinds.get(name) not in ("classifier", "zero_shot"):
            raise ValueError(
                f"--zero-shot {name!r}: not a task score file; task files: {scores.task_models}"
            )
        scores.kinds[name] = "zero_shot"
    log(
        f"loaded {scores.n_rows} rows, {len(scores.q)} Q variables, task models "
        f"{o.task_models or scores.task_models} ({time.perf_counter() - t0:.1f}s)"
    )
    for name in o.task_models or []:
        if name in scores.kinds and name not in scores.m:
            raise ValueError(
                f"task model {name!r}: its score file has no `correct` column (images scored "
                "without labels, e.g. with `iqa-kit score --images`); correctness M needs labels"
            )
    return scores


def _groupwise_tables(run: _Run) -> dict[str, pd.DataFrame]:
    """Group means, and the correlations when there are enough groups."""
    o = run.options
    if not run.wants("groupwise"):
        return {}
    means = group_means(run.scores, None, o.task_models, o.include_clean_group)
    tables = {"groupwise_means": means}
    if "groupwise" not in run.skipped:
        tables["groupwise_correlations"] = run.timed(
            "group-wise",
            lambda: groupwise(run.scores, None, o.task_models, n_bootstrap=o.n_bootstrap, seed=o.seed,
                              level=o.level, include_clean=o.include_clean_group, progress=o.progress,
                              means=means),
        )
    return tables


def _pointwise_tables(run: _Run, groupwise_tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Point-wise, the summary and pairs beside group-wise, and the paired tests."""
    o = run.options
    if not (run.wants("pointwise") or run.wants("paired")):
        return {}
    # the fits and bootstrap AUC replicates of every (Q, M): one pass, both tables
    work = run.timed(
        "point-wise fits and bootstrap",
        lambda: auc_work(run.scores, None, o.task_models, test_fraction=o.test_fraction,
                         n_bootstrap=o.n_bootstrap, seed=o.seed, progress=o.progress),
    )
    tables: dict[str, pd.DataFrame] = {}
    if run.wants("pointwise"):
        tables["pointwise"] = run.timed(
            "point-wise",
            lambda: pointwise(run.scores, None, o.task_models, test_fraction=o.test_fraction,
                              n_bootstrap=o.n_bootstrap, seed=o.seed, level=o.level,
                              progress=o.progress, work=work),
        )
    if run.wants("groupwise") and run.wants("pointwise"):
        tables["summary"] = summary_table(tables["pointwise"], groupwise_tables.get("groupwise_correlations"))
        tables["pairs"] = pairs(tables["summary"], run.scores.classifiers)
    if run.wants("paired"):
        tables["paired_tests"] = run.timed(
            "paired tests",
            lambda: paired_tests(run.scores, None, o.task_models, test_fraction=o.test_fraction,
                                 n_bootstrap=o.n_bootstrap, seed=o.seed, level=o.level,
                                 include_clean=o.include_clean_group, progress=o.progress, work=work),
        )
    return tables


def _content_tables(run: _Run) -> dict[str, pd.DataFrame]:
    """Per-label and per-image-ID cross-validation."""
    o = run.options
    tables: dict[str, pd.DataFrame] = {}
    for name, desc, func in (("per_label", "per-label", per_label), ("per_image", "per-image", per_image)):
        if run.wants(name):
            tables[name] = run.timed(
                desc, lambda f=func: f(run.scores, None, o.task_models, n_folds=o.n_folds, seed=o.seed,
                                       progress=o.progress))
    return tables


def _mixture_tables(run: _Run) -> dict[str, pd.DataFrame]:
    """The mild-corruption mixtures, when the data has clean and mildly corrupted rows."""
    o = run.options
    if not run.wants("mixtures") or "mixtures" in run.skipped:
        return {}
    mix = run.timed(
        "mixtures",
        lambda: mixtures(run.scores, None, o.task_models, fractions=o.mixture_fractions,
                         corruptions=o.mixture_corruptions, severities=o.mixture_severities,
                         test_fraction=o.test_fraction, seed=o.seed, progress=o.progress),
    )
    return {f"mixtures_{k}": v for k, v in mix.items()}


def _record(scores_dir: str | Path, scores: ScoreSet, o: AnalysisOptions, skipped: dict[str, str]) -> dict:
    """What ``analysis_params.json`` says: the options used and what was skipped."""
    return {
        "scores_dir": str(scores_dir),
        "seed": o.seed,
        "n_bootstrap": o.n_bootstrap,
        "level": o.level,
        "test_fraction": o.test_fraction,
        "n_folds": o.n_folds,
        "task_models": o.task_models or scores.task_models,
        "scorers": list(scores.kinds),
        "kinds": scores.kinds,
        "mixture_fractions": [float(f) for f in o.mixture_fractions],
        "mixture_corruptions": o.mixture_corruptions,
        "mixture_severities": list(o.mixture_severities),
        "include_clean_group": o.include_clean_group,
        "analyses": list(o.analyses),
        "skipped": skipped,
        "n_rows": scores.n_rows,
    }


def run_all(
    scores_dir: str | Path,
    out_dir: str | Path,
    options: AnalysisOptions | None = None,
    *,
    log: Callable[[str], object] = print,
    **changes,
) -> dict[str, pd.DataFrame]:
    """Load ``scores_dir``, run the chosen analyses, write CSVs to ``out_dir``; return the tables.

    ``options`` (default :class:`AnalysisOptions`) with the fields named in ``changes``
    replaced: ``run_all(d, out, n_bootstrap=20, progress=False)`` in a script or test.
    """
    o = replace(options or AnalysisOptions(), **changes)
    unknown = sorted(set(o.analyses) - set(ANALYSES))
    if unknown:
        raise ValueError(f"unknown analysis {unknown}; choose from {ANALYSES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scores = _load(scores_dir, o, log, t0)
    skipped = unsupported(scores, o.analyses, o.include_clean_group, o.mixture_severities)
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    run = _Run(scores, o, skipped, log)
    tables = _groupwise_tables(run)
    tables.update(_pointwise_tables(run, tables))
    tables.update(_content_tables(run))
    tables.update(_mixture_tables(run))
    for name, table in tables.items():
        write_csv(table, out / f"{name}.csv")
    atomic_write_text(out / "analysis_params.json", json.dumps(_record(scores_dir, scores, o, skipped), indent=2))
    log(f"wrote {len(tables)} tables to {out} ({time.perf_counter() - t0:.1f}s in all)")
    return tables
