"""Paired significance between metrics: is Q_a really better than Q_b at predicting M?

One row per (task model, unordered pair of Q). Both metrics are judged on the same data,
so each comparison is paired:

- AUC (point-wise): the same held-out image IDs as :func:`iqa_lib.analysis.pointwise`
  (``group_test_mask(scores.image, test_fraction, seed)``), each Q oriented by the sign of
  its logistic slope fitted on the training rows, so ``auc_a`` is point-wise's ``auc``.
  ``delong_z``/``delong_p``: DeLong's test of AUC_a - AUC_b with the *clustered*
  covariance (Obuchowski 1997, clusters = test image IDs; ``delong_clustered`` is True):
  the ImageNet-C variants of one image are not independent rows, and ordinary DeLong
  would understate the variance. ``auc_diff_ci_low/high`` and ``auc_p_boot``: the paired
  cluster bootstrap over test image IDs, the same resamples as point-wise's intervals.
- SRCC (group-wise): |SRCC| of group accuracy vs group mean Q over the (corruption,
  severity) groups, as in the group-wise table; the paired bootstrap over groups (the
  same resamples as group-wise's intervals) gives ``srcc_diff_ci_low/high`` and
  ``srcc_p_boot`` (normal approximation with the bootstrap SE, see
  :mod:`iqa_lib.stats.paired_bootstrap`). NaN with fewer than 3 groups.
  ``min_group_images``: the images behind the task model's accuracy in its smallest group;
  the test is valid only with enough groups *and* enough images per group (the groups share
  their images, which a bootstrap over groups cannot see).

Holm's adjustment (``*_p_holm``) runs over one family: every Q pair of one task model in
this table (``holm_family``) whose test is valid at its n (``auc_test_valid``,
``srcc_test_valid``: the rule of :mod:`iqa_lib.analysis.inference`); an invalid test keeps
its raw statistic but gets no adjusted p-value and ``significant_*`` NA (untested). The
paper's tables are separate families: call with that table's Qs (NR-IQA and ZSCLIP-IQA scores for Tables 1/3; classifier confidences for
Tables 2/4) to get their adjustment. ``significant_auc`` / ``significant_srcc``: the Holm
p-value is below 1 - level. ``small_n_*`` follow :mod:`iqa_lib.analysis.sample_size`.

Cost: one sort and one placement-value pass per (Q, task model), O(n log n); every pair
then reads the k x k DeLong covariance and differences of bootstrap replicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from iqa_lib import defaults
from iqa_lib.analysis.common import resolve
from iqa_lib.analysis.groupwise import MIN_GROUPS, group_codes
from iqa_lib.analysis.inference import auc_test_valid, holm_valid, significance, srcc_test_valid
from iqa_lib.analysis.io import ScoreSet
from iqa_lib.analysis.pointwise import AucWork, ensure_work
from iqa_lib.analysis.sample_size import (
    class_image_counts,
    group_image_counts,
    small_auc,
    small_groups,
)
from iqa_lib.stats.bootstrap import bootstrap_indices
from iqa_lib.stats.delong import delong_from_placements, paired_z, placement_values
from iqa_lib.stats.logistic import STATUS_NAMES
from iqa_lib.stats.paired_bootstrap import (
    diff_summary,
    spearman,
    srcc_reps,
    unit_rank_rows,
)


def _orientation(slope: float, status: str) -> float:
    """+1 / -1 / 0 (constant score: AUC 0.5) / NaN (no fit), like point-wise's fitted AUC."""
    if status in ("constant_m", "empty") or not np.isfinite(slope):
        return np.nan
    return float(np.sign(slope))


def _orient(values: np.ndarray, sign: float) -> np.ndarray:
    """AUC-type values (placements, AUC replicates) of the score multiplied by ``sign``."""
    if sign > 0:
        return values
    if sign < 0:
        return 1.0 - values
    if sign == 0:
        return np.where(np.isfinite(values), 0.5, np.nan)
    return np.full_like(values, np.nan)


@dataclass
class _Groups:
    """The (corruption, severity) groups every task model shares: codes, sizes, each Q's
    group means, one set of group resamples and each Q's ranks in them (SRCC needs
    :data:`~iqa_lib.analysis.groupwise.MIN_GROUPS` groups: below that only ``codes``)."""

    codes: np.ndarray
    n_groups: int
    keep: np.ndarray | None = None
    c: np.ndarray | None = None
    n_per: np.ndarray | None = None
    qmean: list[np.ndarray] = field(default_factory=list)
    idx: np.ndarray | None = None
    q_ranks: list[np.ndarray] | None = None

    @property
    def do_srcc(self) -> bool:
        return self.keep is not None

    def mean(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self.c, weights=v[self.keep].astype(np.float64), minlength=self.n_groups) / self.n_per


def _groups(scores: ScoreSet, qs: list, include_clean: bool, n_bootstrap: int, seed: int) -> _Groups:
    codes, groups = group_codes(scores, include_clean)
    g = _Groups(codes, len(groups))
    if g.n_groups < MIN_GROUPS:
        return g
    g.keep = codes >= 0
    g.c = codes[g.keep]
    g.n_per = np.bincount(g.c, minlength=g.n_groups)
    g.qmean = [g.mean(scores.q[q]) for q in qs]
    g.idx = bootstrap_indices(g.n_groups, n_bootstrap, seed) if n_bootstrap > 0 else None
    g.q_ranks = [unit_rank_rows(v, g.idx) for v in g.qmean] if g.idx is not None else None
    return g


def _signs_and_orders(work: AucWork, qs: list, n_models: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each (Q, task model)'s orientation from the point-wise fit, and Q's sorted test rows."""
    sign = np.empty((len(qs), n_models))
    sorted_q = []
    for i, q in enumerate(qs):
        _, b, status = work.fits[q]
        sign[i] = [_orientation(b[j], STATUS_NAMES[int(status[j])]) for j in range(n_models)]
        order, _ = work.sorted_test[q]
        sorted_q.append(order)
    return sign, sorted_q


@dataclass(frozen=True)
class _ModelTests:
    """One task model's ingredients for every pair: test correctness, DeLong's placements
    and covariance, oriented bootstrap AUC replicates, group-wise |SRCC| and its replicates."""

    model: str
    yt: np.ndarray
    n_pos_img: int
    n_neg_img: int
    dl: object  # iqa_lib.stats.delong result: auc, cov
    reps: np.ndarray
    min_images: int
    srcc: np.ndarray | None
    s_reps: list[np.ndarray] | None


def _model_srcc(g: _Groups, m: np.ndarray) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
    """|SRCC| of each Q's group means with the group accuracy, and its bootstrap replicates."""
    if not g.do_srcc:
        return None, None
    acc = g.mean(m)
    r_point = np.array([spearman(qm, acc) for qm in g.qmean])
    r_sign = np.where(r_point >= 0, 1.0, -1.0)
    srcc = r_sign * r_point
    if g.idx is None:
        return srcc, None
    acc_ranks = unit_rank_rows(acc, g.idx)
    return srcc, [r_sign[i] * srcc_reps(g.q_ranks[i], acc_ranks) for i in range(len(g.qmean))]


def _model_tests(
    scores: ScoreSet, qs: list, work: AucWork, oriented: tuple[np.ndarray, list[np.ndarray]],
    j: int, model: str, g: _Groups, n_bootstrap: int,
) -> _ModelTests:
    sign, sorted_q = oriented
    yt = np.ascontiguousarray(scores.m[model][work.test], dtype=np.int8)
    n_pos_img, n_neg_img = class_image_counts(yt, work.test_cluster)
    v = np.empty((len(qs), yt.size))
    reps = np.full((len(qs), max(n_bootstrap, 0)), np.nan)
    for i, order in enumerate(sorted_q):
        x_te = scores.q[qs[i]][work.test]
        v[i] = _orient(placement_values(x_te, yt, order), sign[i, j])
        if n_bootstrap > 0:
            reps[i] = _orient(work.raw[qs[i]][j][1:], sign[i, j])
    dl = delong_from_placements(v, yt, work.test_cluster)
    min_images = int(group_image_counts(g.codes, g.n_groups, scores.m[model]).min()) if g.n_groups else 0
    srcc, s_reps = _model_srcc(g, scores.m[model])
    return _ModelTests(model, yt, n_pos_img, n_neg_img, dl, reps, min_images, srcc, s_reps)


def _srcc_columns(t: _ModelTests, a: int, b: int, level: float) -> dict:
    if t.srcc is None:
        row = {"srcc_a": np.nan, "srcc_b": np.nan, "srcc_diff": np.nan}
        sboot: dict = {}
    else:
        d = float(t.srcc[a] - t.srcc[b])
        row = {"srcc_a": float(t.srcc[a]), "srcc_b": float(t.srcc[b]), "srcc_diff": d}
        sboot = diff_summary(d, t.s_reps[a] - t.s_reps[b], level) if t.s_reps is not None else {}
    row["srcc_diff_ci_low"] = sboot.get("ci_low", np.nan)
    row["srcc_diff_ci_high"] = sboot.get("ci_high", np.nan)
    row["srcc_p_boot"] = sboot.get("p_value", np.nan)
    row["n_boot_valid_srcc"] = sboot.get("n_boot_valid", 0)
    return row


def _pair_row(
    scores: ScoreSet, qs: list, t: _ModelTests, a: int, b: int, n_img: int, n_groups: int,
    n_bootstrap: int, level: float,
) -> dict:
    """One (task model, q_a, q_b) row: the AUC difference (DeLong, bootstrap) and the |SRCC| one."""
    z = paired_z(t.dl.auc, t.dl.cov, a, b)
    boot = diff_summary(z.diff, t.reps[a] - t.reps[b], level) if n_bootstrap > 0 else {}
    return {
        "task_model": t.model,
        "scorer_a": qs[a][0],
        "q_a": qs[a][1],
        "kind_a": scores.kinds[qs[a][0]],
        "scorer_b": qs[b][0],
        "q_b": qs[b][1],
        "kind_b": scores.kinds[qs[b][0]],
        "holm_family": t.model,
        "n_test": int(t.yt.size),
        "n_test_images": n_img,
        "n_test_pos_images": t.n_pos_img,
        "n_test_neg_images": t.n_neg_img,
        "auc_a": z.auc_a,
        "auc_b": z.auc_b,
        "auc_diff": z.diff,
        "auc_diff_ci_low": boot.get("ci_low", np.nan),
        "auc_diff_ci_high": boot.get("ci_high", np.nan),
        "auc_p_boot": boot.get("p_value", np.nan),
        "delong_clustered": True,
        "delong_var": z.var_diff,
        "delong_z": z.z,
        "delong_p": z.p_value,
        "n_groups": n_groups,
        "min_group_images": t.min_images,
        "n_boot_valid_auc": boot.get("n_boot_valid", 0),
        **_srcc_columns(t, a, b, level),
    }


def _holm_within_model(block: list[dict]) -> pd.DataFrame:
    """One task model's pairs with Holm-adjusted p-values over its valid tests only
    (iqa_lib.analysis.inference): an invalid test has no adjusted p-value and cannot move the others'."""
    frame = pd.DataFrame(block)
    frame["delong_p_holm"] = holm_valid(
        frame["delong_p"], auc_test_valid(frame["n_test_pos_images"], frame["n_test_neg_images"]))
    frame["srcc_p_holm"] = holm_valid(
        frame["srcc_p_boot"], srcc_test_valid(frame["n_groups"], frame["min_group_images"]))
    return frame


def _validity_and_marks(out: pd.DataFrame, do_srcc: bool, alpha: float) -> pd.DataFrame:
    out["auc_test_valid"] = auc_test_valid(out["n_test_pos_images"], out["n_test_neg_images"])
    out["srcc_test_valid"] = srcc_test_valid(out["n_groups"], out["min_group_images"]) & do_srcc
    out["significant_auc"] = significance(out["delong_p_holm"], out["auc_test_valid"], alpha)
    out["significant_srcc"] = significance(out["srcc_p_holm"], out["srcc_test_valid"], alpha)
    out["small_n_auc"] = small_auc(out["n_test_pos_images"], out["n_test_neg_images"])
    out["small_n_srcc"] = small_groups(out["n_groups"], out["min_group_images"]) & do_srcc
    out["small_n"] = out["small_n_auc"] | out["small_n_srcc"]
    return out[COLUMNS]


def paired_tests(
    scores: ScoreSet,
    q_names=None,
    task_models=None,
    *,
    test_fraction: float = defaults.TEST_FRACTION,
    n_bootstrap: int = defaults.N_BOOTSTRAP,
    seed: int = defaults.SEED,
    level: float = defaults.LEVEL,
    include_clean: bool = False,
    progress: bool = False,
    work: AucWork | None = None,
) -> pd.DataFrame:
    """One row per (task model, q_a, q_b), q_a before q_b in ``q_names`` order.

    Columns: task_model, scorer_a, q_a, kind_a, scorer_b, q_b, kind_b, holm_family,
    n_test, n_test_images, n_test_pos_images, n_test_neg_images, auc_a, auc_b, auc_diff
    (a - b), auc_diff_ci_low/high, auc_p_boot, delong_clustered, delong_var, delong_z,
    delong_p, delong_p_holm, n_groups, min_group_images, srcc_a, srcc_b, srcc_diff, srcc_diff_ci_low/high,
    srcc_p_boot, srcc_p_holm, auc_test_valid, srcc_test_valid, significant_auc,
    significant_srcc, small_n_auc,
    small_n_srcc, small_n, n_boot_valid_auc, n_boot_valid_srcc. See the module docstring.
    ``work``: :func:`iqa_lib.analysis.pointwise.auc_work` output for the same arguments
    (the point-wise table's fits and bootstrap replicates), computed here when not given.
    """
    qs, models = resolve(scores, q_names, task_models)
    # the point-wise fits (orientation) and bootstrap AUC replicates: shared with pointwise
    work = ensure_work(work, scores, qs, models, test_fraction, n_bootstrap, seed)
    oriented = _signs_and_orders(work, qs, len(models))
    # group-wise: accuracy and mean Q per group, one set of group resamples
    g = _groups(scores, qs, include_clean, n_bootstrap, seed)
    rows = []
    for j, model in enumerate(tqdm(models, desc="paired", disable=not progress, leave=False)):
        t = _model_tests(scores, qs, work, oriented, j, model, g, n_bootstrap)
        block = [_pair_row(scores, qs, t, a, b, work.n_img, g.n_groups, n_bootstrap, level)
                 for a in range(len(qs)) for b in range(a + 1, len(qs))]
        if block:
            rows.append(_holm_within_model(block))
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    return _validity_and_marks(pd.concat(rows, ignore_index=True), g.do_srcc, 1.0 - level)


COLUMNS = [
    "task_model",
    "scorer_a",
    "q_a",
    "kind_a",
    "scorer_b",
    "q_b",
    "kind_b",
    "holm_family",
    "n_test",
    "n_test_images",
    "n_test_pos_images",
    "n_test_neg_images",
    "auc_a",
    "auc_b",
    "auc_diff",
    "auc_diff_ci_low",
    "auc_diff_ci_high",
    "auc_p_boot",
    "delong_clustered",
    "delong_var",
    "delong_z",
    "delong_p",
    "delong_p_holm",
    "n_groups",
    "min_group_images",
    "srcc_a",
    "srcc_b",
    "srcc_diff",
    "srcc_diff_ci_low",
    "srcc_diff_ci_high",
    "srcc_p_boot",
    "srcc_p_holm",
    "auc_test_valid",
    "srcc_test_valid",
    "significant_auc",
    "significant_srcc",
    "small_n_auc",
    "small_n_srcc",
    "small_n",
    "n_boot_valid_auc",
    "n_boot_valid_srcc",
]

__all__ = ["COLUMNS", "paired_tests"]


def within_table(paired: pd.DataFrame, members: pd.DataFrame, level: float = defaults.LEVEL) -> pd.DataFrame:
    """The pairs among one paper table's rows, Holm re-adjusted within that table.

    ``members``: the table's (task_model, scorer, q) rows. Each task model's pairs of those
    rows form one family (the paper's tables are read one model at a time), so a table's
    marks do not depend on which other scorers happen to be configured. Adds
    ``delong_p_holm_table``, ``srcc_p_holm_table``, ``significant_auc_table`` and
    ``significant_srcc_table``.
    """
    alpha = 1.0 - level
    keep = set(zip(members["task_model"], members["scorer"], members["q"], strict=True))
    in_a = [(m, s, q) in keep for m, s, q in zip(paired["task_model"], paired["scorer_a"], paired["q_a"], strict=True)]
    in_b = [(m, s, q) in keep for m, s, q in zip(paired["task_model"], paired["scorer_b"], paired["q_b"], strict=True)]
    out = paired[np.asarray(in_a) & np.asarray(in_b)].copy()
    # validity from the counts, so that a file written before the rule is judged by it too
    out["auc_test_valid"] = auc_test_valid(out["n_test_pos_images"], out["n_test_neg_images"])
    images = out["min_group_images"] if "min_group_images" in out.columns else None  # older files: groups only
    out["srcc_test_valid"] = srcc_test_valid(out["n_groups"], images) & out["srcc_p_boot"].notna().to_numpy()
    out["delong_p_holm_table"] = np.nan
    out["srcc_p_holm_table"] = np.nan
    for _, index in out.groupby("task_model").groups.items():
        rows = out.loc[index]
        out.loc[index, "delong_p_holm_table"] = holm_valid(rows["delong_p"], rows["auc_test_valid"])
        out.loc[index, "srcc_p_holm_table"] = holm_valid(rows["srcc_p_boot"], rows["srcc_test_valid"])
    out["significant_auc_table"] = significance(out["delong_p_holm_table"], out["auc_test_valid"], alpha)
    out["significant_srcc_table"] = significance(out["srcc_p_holm_table"], out["srcc_test_valid"], alpha)
    return out.reset_index(drop=True)
