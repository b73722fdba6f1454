"""Group-wise analysis: accuracy and mean Q per (corruption, severity); their correlations.

One point per group (75 for ImageNet-C; the clean images are left out unless
``include_clean``), |KRCC|, |SRCC|, |PLCC| over the group means with scipy p-values and
percentile intervals from bootstrap resamples of the groups (paper Tables 1-4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from iqa_lib import defaults
from iqa_lib.analysis.common import combos, label_cols, resolve
from iqa_lib.analysis.io import CLEAN, ScoreSet
from iqa_lib.analysis.sample_size import small_groups
from iqa_lib.stats.bootstrap import bootstrap_indices
from iqa_lib.stats.correlation import Resampled, bootstrap_correlations

MIN_GROUPS = 3  # correlations over fewer group means are meaningless


def group_codes(scores: ScoreSet, include_clean: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-row group code (-1 for rows left out) and the (corruption, severity) of each group."""
    key = scores.corruption.astype(np.int64) * 1000 + scores.severity
    keep = np.ones(scores.n_rows, dtype=bool) if include_clean else ~scores.clean_mask()
    uniq, inverse = np.unique(key[keep], return_inverse=True)
    codes = np.full(scores.n_rows, -1, dtype=np.int64)
    codes[keep] = inverse
    groups = pd.DataFrame(
        {
            "corruption": np.asarray(scores.corruptions)[uniq // 1000],
            "severity": (uniq % 1000).astype(np.int64),
        }
    )
    return codes, groups


def group_means(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    include_clean: bool = False,
) -> pd.DataFrame:
    """Tidy table of group means: one row per (group, measure, source, variant).

    ``measure`` is ``accuracy`` (source = task model, variant ``m``) or ``q`` (source =
    scorer, variant = q/q_p/q_h/q_l); ``n`` is the number of images in the group.
    """
    qs, models = resolve(scores, q_names, task_models)
    codes, groups = group_codes(scores, include_clean)
    keep = codes >= 0
    c = codes[keep]
    n = np.bincount(c, minlength=len(groups))
    frames = []
    for model in models:
        mean = np.bincount(c, weights=scores.m[model][keep], minlength=len(groups)) / n
        frames.append(groups.assign(n=n, measure="accuracy", source=model, variant="m", mean=mean))
    for q in qs:
        mean = np.bincount(c, weights=scores.q[q][keep].astype(np.float64), minlength=len(groups))
        frames.append(groups.assign(n=n, measure="q", source=q[0], variant=q[1], mean=mean / n))
    return pd.concat(frames, ignore_index=True)


def groupwise(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    *,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
    include_clean: bool = False,
    progress: bool = False,
    means: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """KRCC/SRCC/PLCC of group accuracy vs group mean Q for every (task model, Q) pair.

    Tidy: one row per (task_model, scorer, q, stat) with r, abs_r, p_value, ci_low/ci_high,
    abs_ci_low/abs_ci_high, n (groups), n_boot_valid, min_group_images (images behind the
    task model's accuracy in its smallest group), small_n (fewer than
    :data:`iqa_lib.analysis.sample_size.SMALL_N_GROUPS` groups, or fewer than
    :data:`~iqa_lib.analysis.sample_size.SMALL_N_GROUP_IMAGES` images in the smallest group). The
    same seeded resamples of the groups are used for every pair. Pass ``means`` (from
    :func:`group_means`) to reuse them.
    """
    qs, models = resolve(scores, q_names, task_models)
    if means is None:
        means = group_means(scores, qs, models, include_clean)
    n_groups = int(means.groupby(["corruption", "severity"]).ngroups)
    if n_groups < MIN_GROUPS:
        raise ValueError(
            f"group-wise correlations need at least {MIN_GROUPS} (corruption, severity) groups, found "
            f"{n_groups}{'' if include_clean else ' (clean images are not a group)'}"
        )
    idx = bootstrap_indices(n_groups, n_bootstrap, seed)
    acc, qmean = _group_series(means, qs, models)
    # each variable is resampled once and shared by all its pairs
    r_acc = {m: Resampled(v, idx) for m, v in acc.items()}
    r_q: dict = {}
    frames = []
    for q, model in combos(qs, models, progress, "group-wise"):
        if q not in r_q:
            r_q.clear()
            r_q[q] = Resampled(qmean[q], idx)
        res = bootstrap_correlations(
            qmean[q], acc[model], level=level, resampled=(r_q[q], r_acc[model])
        )
        for k, v in label_cols(scores, q, model).items():
            res[k] = v
        frames.append(res)
    return _with_evidence(pd.concat(frames, ignore_index=True), _min_group_images(means, models))


def _group_series(means: pd.DataFrame, qs: list, models: list[str]) -> tuple[dict, dict]:
    """Each task model's group accuracies and each Q's group means, from :func:`group_means`."""
    sel = {k: g["mean"].to_numpy() for k, g in means.groupby(["measure", "source", "variant"])}
    return {m: sel[("accuracy", m, "m")] for m in models}, {q: sel[("q", q[0], q[1])] for q in qs}


def _min_group_images(means: pd.DataFrame, models: list[str]) -> dict[str, int]:
    """Images behind each model's group accuracies in its smallest group (every row of a
    ScoreSet has its correctness)."""
    per_group = {k: g["n"].to_numpy() for k, g in means[means["measure"] == "accuracy"].groupby("source")}
    return {m: int(per_group[m].min()) for m in models}


def _with_evidence(out: pd.DataFrame, min_images: dict[str, int]) -> pd.DataFrame:
    """The smallest group's images and the small-n mark beside each row, label columns first."""
    out["min_group_images"] = out["task_model"].map(min_images).astype(np.int64)
    out["small_n"] = small_groups(out["n"].to_numpy(), out["min_group_images"].to_numpy())
    first = ["task_model", "scorer", "q", "kind", "stat"]
    return out[first + [c for c in out.columns if c not in first]]


__all__ = ["CLEAN", "MIN_GROUPS", "group_codes", "group_means", "groupwise"]
