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
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.analysis.content import per_image, per_label
from iqa_lib.analysis.groupwise import MIN_GROUPS, group_codes, group_means, groupwise
from iqa_lib.analysis.io import load_scores
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


def run_all(
    scores_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    test_fraction: float = 0.2,
    n_folds: int = 5,
    task_models: list[str] | None = None,
    scorers: list[str] | None = None,
    zero_shot: list[str] | None = None,
    mixture_fractions=DEFAULT_FRACTIONS,
    mixture_corruptions: list[str] | None = None,
    mixture_severities=DEFAULT_SEVERITIES,
    include_clean_group: bool = False,
    analyses=ANALYSES,
    progress: bool = True,
    log=print,
) -> dict[str, pd.DataFrame]:
    """Load ``scores_dir``, run the chosen ``analyses``, write CSVs to ``out_dir``.

    ``task_models``: score files whose ``correct`` column is M (default: every classifier and
    zero-shot file). ``scorers``: score files to load (default: all). ``zero_shot``: task
    files to treat as zero-shot (weak task-guided), overriding the file's metadata or name
    (see :func:`iqa_lib.analysis.io.scorer_kind`); it only decides which files the
    classifier-pairs table leaves out. Returns the tables.
    """
    unknown = sorted(set(analyses) - set(ANALYSES))
    if unknown:
        raise ValueError(f"unknown analysis {unknown}; choose from {ANALYSES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scores = load_scores(scores_dir, scorers)
    for name in zero_shot or []:
        if scores.kinds.get(name) not in ("classifier", "zero_shot"):
            raise ValueError(
                f"--zero-shot {name!r}: not a task score file; task files: {scores.task_models}"
            )
        scores.kinds[name] = "zero_shot"
    log(
        f"loaded {scores.n_rows} rows, {len(scores.q)} Q variables, task models "
        f"{task_models or scores.task_models} ({time.perf_counter() - t0:.1f}s)"
    )
    models = task_models
    for name in models or []:
        if name in scores.kinds and name not in scores.m:
            raise ValueError(
                f"task model {name!r}: its score file has no `correct` column (images scored "
                "without labels, e.g. with `iqa-kit score --images`); correctness M needs labels"
            )
    tables: dict[str, pd.DataFrame] = {}
    skipped = unsupported(scores, analyses, include_clean_group, mixture_severities)
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")

    def timed(name, func):
        t = time.perf_counter()
        result = func()
        log(f"{name}: {time.perf_counter() - t:.1f}s")
        return result

    if "groupwise" in analyses:
        means = group_means(scores, None, models, include_clean_group)
        tables["groupwise_means"] = means
    if "groupwise" in analyses and "groupwise" not in skipped:
        tables["groupwise_correlations"] = timed(
            "group-wise",
            lambda: groupwise(
                scores,
                None,
                models,
                n_bootstrap=n_bootstrap,
                seed=seed,
                level=level,
                include_clean=include_clean_group,
                progress=progress,
                means=means,
            ),
        )
    work = None
    if "pointwise" in analyses or "paired" in analyses:
        # the fits and bootstrap AUC replicates of every (Q, M): one pass, both tables
        work = timed(
            "point-wise fits and bootstrap",
            lambda: auc_work(
                scores,
                None,
                models,
                test_fraction=test_fraction,
                n_bootstrap=n_bootstrap,
                seed=seed,
                progress=progress,
            ),
        )
    if "pointwise" in analyses:
        tables["pointwise"] = timed(
            "point-wise",
            lambda: pointwise(
                scores,
                None,
                models,
                test_fraction=test_fraction,
                n_bootstrap=n_bootstrap,
                seed=seed,
                level=level,
                progress=progress,
                work=work,
            ),
        )
    if "groupwise" in analyses and "pointwise" in analyses:
        tables["summary"] = summary_table(tables["pointwise"], tables.get("groupwise_correlations"))
        tables["pairs"] = pairs(tables["summary"], scores.classifiers)
    if "paired" in analyses:
        tables["paired_tests"] = timed(
            "paired tests",
            lambda: paired_tests(
                scores,
                None,
                models,
                test_fraction=test_fraction,
                n_bootstrap=n_bootstrap,
                seed=seed,
                level=level,
                include_clean=include_clean_group,
                progress=progress,
                work=work,
            ),
        )
    if "per_label" in analyses:
        tables["per_label"] = timed(
            "per-label",
            lambda: per_label(scores, None, models, n_folds=n_folds, seed=seed, progress=progress),
        )
    if "per_image" in analyses:
        tables["per_image"] = timed(
            "per-image",
            lambda: per_image(scores, None, models, n_folds=n_folds, seed=seed, progress=progress),
        )
    if "mixtures" in analyses and "mixtures" not in skipped:
        mix = timed(
            "mixtures",
            lambda: mixtures(
                scores,
                None,
                models,
                fractions=mixture_fractions,
                corruptions=mixture_corruptions,
                severities=mixture_severities,
                test_fraction=test_fraction,
                seed=seed,
                progress=progress,
            ),
        )
        tables.update({f"mixtures_{k}": v for k, v in mix.items()})
    for name, table in tables.items():
        write_csv(table, out / f"{name}.csv")
    params = {
        "scores_dir": str(scores_dir),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "level": level,
        "test_fraction": test_fraction,
        "n_folds": n_folds,
        "task_models": models or scores.task_models,
        "scorers": list(scores.kinds),
        "kinds": scores.kinds,
        "mixture_fractions": [float(f) for f in mixture_fractions],
        "mixture_corruptions": mixture_corruptions,
        "mixture_severities": list(mixture_severities),
        "include_clean_group": include_clean_group,
        "analyses": list(analyses),
        "skipped": skipped,
        "n_rows": scores.n_rows,
    }
    atomic_write_text(out / "analysis_params.json", json.dumps(params, indent=2))
    log(f"wrote {len(tables)} tables to {out} ({time.perf_counter() - t0:.1f}s in all)")
    return tables
