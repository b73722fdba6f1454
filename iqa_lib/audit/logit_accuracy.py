"""The audit's accuracy estimators from kept logits: MaNo and the nuclear norm.

Used by :func:`iqa_lib.audit.accuracy.predict_accuracy` when the task model's reference has
its logits beside it (``<reference>.logits/logits.npy``, rows = the ``row`` of the reference, the
position in the score file it was made from) and the audited score file has them too.
The estimators are :mod:`iqa_lib.analysis.prior.logit_estimators`'; here they are fitted on
the whole reference, applied to the user's images, and validated like ATC by leaving one
corruption out of the reference. Agreement-on-the-line needs several task models on the
same images and is not part of a one-model audit.

- No COT here: it needs the reference's label marginal and a temperature fitted on labelled
  clean rows (``iqa-kit prior`` has both), and a reference keeps ``correct`` but no labels.
  With a uniform marginal and no temperature it validated at 25 points on the Lite0
  reference (every audit paying ~20 s of transports for an estimator it never states), so
  it is left out until references keep their labels.
- Intervals over the user's images: MaNo's score is a function of the mean of per-image
  powers, so it bootstraps like AC; the nuclear norm gets a normal interval from a
  delete-a-block jackknife (a bootstrap resample's repeated rows shrink it).
- The per-image variance behind the conformal interval's kappa is taken as binomial for
  these set-level scores (kappa = 1); on 100-image subsets of held-out shifts the 90%
  interval covered 0.94 (nuclear norm, size-matched as below) and 0.92 (MaNo) of them.
- The nuclear norm depends on how many images it is computed over (fewer images share
  fewer classes, so the normalised norm rises): a line fitted on whole reference groups
  (about 500 images each) over-predicts a set of 100 by ~2.4 points. So when the audited set
  is smaller than a reference group, every reference group's nuclear norm is taken over
  random subsets of the set's size for the fit that predicts it
  (:func:`~iqa_lib.analysis.prior.logit_estimators.size_matched_nuclear`). Its validation
  stays on whole groups, like every other estimator's, so that the audit compares them on
  equal terms (the interval's sampling term covers the small set). A set larger than every
  group is scored the other way round: its nuclear norm is the mean over subsets of the
  largest group's size (the blocks of a random partition, so every image counts once; its
  interval from the spread of the blocks). MaNo's score is a mean over images and needs no
  matching.
- A mixture of shifts is not a group: the nuclear norm of a held-out corruption's five
  severities pooled sat 8.8 points below their accuracy on ImageNet-C's extras (Lite0), while
  it erred 1.8 on each severity alone. :func:`logit_loco` therefore also predicts each held-out
  corruption's pooled severities, as the own-output estimators' validation does, and the
  audit ranks every estimator by the worse of its group and pooled mean errors.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.stats import norm

from iqa_lib.analysis.prior.logit_estimators import (
    MANO_P,
    block_nuclear_scores,
    chunks,
    group_stats,
    mano_rows,
    pooled_mano_score,
    size_matched_nuclear,
)
from iqa_lib.audit.reference import CLEAN, CORRECT, Reference
from iqa_lib.scoring.logits import read_logits
from iqa_lib.stats.bootstrap import percentile_ci

AUDIT_LOGIT_METHODS = ("mano", "nuclear")
JACKKNIFE_BLOCKS = 20


def reference_logits(ref: Reference) -> np.ndarray | None:
    """The logits kept beside the reference file (rows: the score file's, ``info['rows']``)."""
    if ref.path is None or "rows" not in ref.info:
        return None
    return read_logits(ref.path, int(ref.info["rows"]))


def _groups(data: pd.DataFrame) -> list[tuple[str, int, np.ndarray]]:
    """(corruption, severity, positions in ``data``) of each reference group."""
    groups = data.groupby([data["corruption"].astype(str), data["severity"].astype(int)], sort=True).indices
    return [(str(c), int(s), np.asarray(idx)) for (c, s), idx in groups.items()]


class ReferenceGroups:
    """The reference's (corruption, severity) groups with the model's accuracy and the group
    statistics of its logits, computed once: every fold of the validation and the final fit reuse them.

    ``size``: the audited set's image count; ``matched`` are the group statistics with the
    nuclear norm of groups larger than it taken over random subsets of that size (the final
    fit's), ``stats`` those of the whole groups (the validation's; see the module's notes)."""

    def __init__(self, data: pd.DataFrame, logits: np.ndarray, size: int | None = None):
        rows = data.index.to_numpy(np.int64)
        groups = _groups(data)
        self.corruption = np.asarray([c for c, _, _ in groups])
        self.severity = np.asarray([s for _, s, _ in groups])
        self.n = np.asarray([idx.size for _, _, idx in groups])
        self.accuracy = np.asarray([data[CORRECT].to_numpy(np.float64)[idx].mean() for _, _, idx in groups])
        members = [rows[idx] for _, _, idx in groups]
        self.members, self.logits = members, logits
        self.stats = self.matched = group_stats(logits, members)
        if size is not None and size >= 2 and any(m.size > size for m in members):
            self.matched = replace(self.stats, nuclear=size_matched_nuclear(logits, members, size, self.stats.nuclear))
        # a set larger than every group is scored at the largest group's size (LogitFit.nuclear)
        self.target_size = int(self.n.max()) if size is not None and self.n.size and size > self.n.max() else None


class LogitFit:
    """MaNo's and the nuclear norm's lines fitted on the reference groups in ``fit`` (mask),
    with the normalisation MaNo's criterion picks on them."""

    def __init__(self, groups: ReferenceGroups, fit: np.ndarray, classes: int, matched: bool = False,
                 target_size: int | None = None):
        self.fitted = (groups.matched if matched else groups.stats).line_fit(groups.accuracy, fit)
        self.classes = classes
        self.target_size = groups.target_size if matched else target_size

    def mano_powers(self, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per row, sum_k sigma(z)_k^p: MaNo's score is (their mean / K)^(1/p)."""
        return np.concatenate([(mano_rows(z, self.fitted.mano_softmax) ** MANO_P).sum(axis=1) for z in chunks(logits, rows)])

    def mano(self, powers: np.ndarray) -> np.ndarray:
        """Accuracy from the mean per-row powers (any shape of means)."""
        return self.fitted.lines["mano"].predict((np.asarray(powers) / self.classes) ** (1.0 / MANO_P))

    def nuclear(self, logits: np.ndarray, rows: np.ndarray) -> float:
        """Accuracy from the normalised nuclear norm of the rows' softmax; a set larger than the
        groups the line was fitted on is scored at their size (:meth:`nuclear_scores`)."""
        return float(self.fitted.lines["nuclear"].predict(self.nuclear_scores(logits, rows).mean()))

    def nuclear_scores(self, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The rows' nuclear-norm score, or, above :attr:`target_size` rows, the scores of subsets
        of that size (:func:`~iqa_lib.analysis.prior.logit_estimators.block_nuclear_scores`)."""
        return block_nuclear_scores(logits, rows, self.target_size)

    def nuclear_interval(self, logits: np.ndarray, rows: np.ndarray, level: float, seed: int) -> list[float]:
        """A normal interval from a delete-a-block jackknife over the rows (:data:`JACKKNIFE_BLOCKS`
        random blocks). Not a bootstrap: a resample with repeated rows has a smaller nuclear
        norm (fewer distinct rows, less dispersity), so bootstrap percentiles miss the estimate.
        A set scored in two or more disjoint blocks (:meth:`nuclear_scores`) takes the standard
        error of their mean instead, through the line."""
        z = float(norm.ppf(1 - (1 - level) / 2))
        if self.target_size is not None and rows.size >= 2 * self.target_size:
            scores = self.nuclear_scores(logits, rows)
            half = z * float(scores.std(ddof=1)) / math.sqrt(scores.size)
            ends = self.fitted.lines["nuclear"].predict(np.asarray([scores.mean() - half, scores.mean() + half]))
            return [float(ends.min()), float(ends.max())]
        blocks = np.array_split(np.random.default_rng(seed).permutation(rows.size), min(JACKKNIFE_BLOCKS, rows.size))
        if len(blocks) < 2:
            return [math.nan, math.nan]
        keep = [np.sort(rows[np.setdiff1d(np.arange(rows.size), b)]) for b in blocks]
        theta = np.asarray([self.nuclear(logits, k) for k in keep])
        g = theta.size
        se = math.sqrt((g - 1) / g * float(((theta - theta.mean()) ** 2).sum()))
        value = self.nuclear(logits, rows)
        return [max(0.0, value - z * se), min(1.0, value + z * se)]


def _bootstrap_means(values: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray([values[rng.integers(0, values.size, values.size)].mean() for _ in range(n_bootstrap)])


def logit_estimates(
    groups: ReferenceGroups, reference_accuracy: float, target_logits: np.ndarray, rows: np.ndarray,
    n_bootstrap: int, seed: int, level: float,
) -> pd.DataFrame:
    """MaNo and the nuclear norm on the target's ``rows`` of ``target_logits``, fitted on
    the whole reference; the columns of :func:`iqa_lib.analysis.prior.estimators.estimate_accuracy`."""
    fit = LogitFit(groups, np.ones(groups.n.size, dtype=bool), target_logits.shape[1], matched=True)
    powers = fit.mano_powers(target_logits, rows)
    values = {"mano": (float(fit.mano(powers.mean())), fit.mano(_bootstrap_means(powers, n_bootstrap, seed)))}
    values["nuclear"] = (fit.nuclear(target_logits, rows), fit.nuclear_interval(target_logits, rows, level, seed))
    out = []
    for method, (value, spread) in values.items():
        lo, hi = spread if method == "nuclear" else percentile_ci(spread, level)
        out.append({"method": method, "predicted": value, "ci_low": lo, "ci_high": hi, "n_target": int(rows.size),
                    "n_reference": int(groups.n.sum()), "reference_accuracy": reference_accuracy})
    return pd.DataFrame(out)


def logit_loco(groups: ReferenceGroups, classes: int) -> list[dict]:
    """Leave-one-corruption-out rows (``loco_validation``'s columns) of MaNo and the
    nuclear norm on the reference: fit on clean and the other corruptions, predict each
    severity group of the held-out one, and its severities pooled (the nuclear norm of the
    pooled set at a group's size, as an audited set larger than the groups is scored)."""
    out = []
    for held in (c for c in pd.unique(groups.corruption) if c != CLEAN):
        where = np.flatnonzero(groups.corruption == held)
        fit = LogitFit(groups, groups.corruption != held, classes, target_size=int(groups.n.max()))
        for g in where:
            pred = {k: float(v) for k, v in fit.fitted.predict(g).items()}
            actual = float(groups.accuracy[g])
            out += [{"method": k, "corruption": str(held), "severity": int(groups.severity[g]), "n": int(groups.n[g]),
                     "predicted": v, "actual": actual, "var_d": actual * (1 - actual), "pooled": False}
                    for k, v in pred.items()]
        if where.size > 1:
            out += _pooled_rows(groups, fit, where, str(held))
    return out


def logit_clean_check(groups: ReferenceGroups, classes: int) -> list[dict]:
    """MaNo and the nuclear norm fitted on the corrupted groups only and read on the clean
    group(s) (:func:`iqa_lib.audit.accuracy.clean_check`'s columns); none without both."""
    clean = np.flatnonzero(groups.corruption == CLEAN)
    if not clean.size or clean.size == groups.corruption.size:
        return []
    fit = LogitFit(groups, groups.corruption != CLEAN, classes, target_size=int(groups.n.max()))
    return [{"method": k, "n": int(groups.n[g]), "predicted": float(v), "actual": float(groups.accuracy[g])}
            for g in clean for k, v in fit.fitted.predict(g).items()]


def _pooled_rows(groups: ReferenceGroups, fit: LogitFit, where: np.ndarray, held: str) -> list[dict]:
    """MaNo and the nuclear norm on the groups ``where`` taken together."""
    n = groups.n[where]
    actual = float((groups.accuracy[where] * n).sum() / n.sum())
    pooled_mano = pooled_mano_score(fit.fitted.scores["mano"][where], n)
    rows = np.concatenate([groups.members[g] for g in where])
    pred = {"mano": float(fit.fitted.lines["mano"].predict(pooled_mano)),
            "nuclear": fit.nuclear(groups.logits, rows)}
    return [{"method": k, "corruption": held, "severity": 0, "n": int(n.sum()), "predicted": v, "actual": actual,
             "var_d": actual * (1 - actual), "pooled": True} for k, v in pred.items()]
