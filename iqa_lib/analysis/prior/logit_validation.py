"""Leave-one-corruption-out predictions of the logit estimators (:mod:`.logit_estimators`).

:func:`iqa_lib.analysis.prior.validation.leave_one_corruption_out` calls
:func:`logit_fold_predictions` for every task model whose score file has its logits kept:
MaNo and the nuclear norm are computed once per (corruption, severity) group
(:class:`LogitGroups`, one chunked pass over the memory-mapped logits) and, per fold, a
linear fit of accuracy on the score over the reference groups (clean and the other
corruptions) predicts the held-out groups (the nuclear norm's at one size for both sides: the
smaller of a held-out group's and the groups'); COT transports each held-out group's softmax
vectors (at the temperature fitted on the clean rows) to the reference's label marginal; agreement-on-the-line (three or more task models
with logits) takes the clean rows as its in-distribution set. Held-out rows never enter a fit.

Each estimator also predicts the held-out corruption's severities pooled (a set that mixes
shifts, as a user's data may): none of these is a mean of per-image values, so the pool gets
its own computation (MaNo from the groups' powers, the nuclear norm over blocks of a group's
size, COT's transport and the models' agreement on all of the pool's rows).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from iqa_lib.analysis.groupwise import group_codes
from iqa_lib.analysis.io import ScoreSet
from iqa_lib.analysis.prior.estimators import label_marginal
from iqa_lib.analysis.prior.logit_estimators import (
    POT_MISSING,
    GroupStats,
    agreement,
    aline,
    block_nuclear_scores,
    cot_accuracy,
    fit_temperature,
    group_stats,
    pooled_mano_score,
    pot_available,
    size_matched_nuclear,
)

# (method, scorer, Q variant, kind, predicted accuracy per severity group, predicted accuracy of
# the groups pooled, or None where that is the groups' row-weighted mean: an estimator that
# averages per-image values)
Prediction = tuple[str, str, str, str, np.ndarray, float | None]
ALINE_MIN_MODELS = 3


@dataclass(frozen=True)
class ModelLogits:
    """A task model's memory-mapped logits and, for each row of the aligned scores, its row in them."""

    array: np.ndarray
    rows: np.ndarray

    @property
    def classes(self) -> int:
        return int(self.array.shape[1])


@dataclass(frozen=True)
class LogitGroups:
    """The scores' (corruption, severity) groups with one task model's group statistics."""

    corruption: np.ndarray  # corruption code of each group
    severity: np.ndarray
    accuracy: np.ndarray  # the model's accuracy in each group
    stats: GroupStats
    logits: np.ndarray  # the model's logits, and each group's rows in them
    members: list[np.ndarray]
    _at_size: dict[int, GroupStats] = field(default_factory=dict, repr=False, compare=False)

    def at_size(self, size: int) -> GroupStats:
        """The statistics with every group larger than ``size`` scored at that size (the nuclear
        norm over random subsets; see :func:`size_matched_nuclear`), computed once per size."""
        if not any(rows.size > size for rows in self.members):
            return self.stats
        if size not in self._at_size:
            nuclear = size_matched_nuclear(self.logits, self.members, size, self.stats.nuclear)
            self._at_size[size] = replace(self.stats, nuclear=nuclear)
        return self._at_size[size]


def logit_groups(scores: ScoreSet, m: np.ndarray, logits: ModelLogits) -> LogitGroups:
    """Group statistics of every (corruption, severity) group, computed once per task model."""
    inv, groups = group_codes(scores, include_clean=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.cumsum(np.bincount(inv, minlength=len(groups)))[:-1]
    members = np.split(order, bounds)
    acc = np.asarray([float(m[rows].mean()) for rows in members])
    in_logits = [logits.rows[rows] for rows in members]
    stats = group_stats(logits.array, in_logits)
    corruption = scores.corruptions.get_indexer(groups["corruption"]).astype(np.int64)
    return LogitGroups(corruption, groups["severity"].to_numpy(np.int64), acc, stats, logits.array, in_logits)


def _line_predictions(groups: LogitGroups, held: int, severities: np.ndarray) -> dict[str, np.ndarray]:
    """MaNo and the nuclear norm on the held-out corruption's groups (in ``severities`` order),
    each mapped to accuracy by a line fitted on the other groups. The nuclear norm depends on
    how many images it is taken over: reference groups larger than a held-out group are scored
    at its size, a held-out group larger than every reference group at the largest one's."""
    ref = groups.corruption != held
    tgt = np.asarray([np.flatnonzero((groups.corruption == held) & (groups.severity == s))[0]
                      for s in severities])
    out = {k: np.empty(tgt.size) for k in ("mano", "nuclear")}
    largest = int(groups.stats.n[ref].max())
    for size in np.unique(groups.stats.n[tgt]):
        at = np.flatnonzero(groups.stats.n[tgt] == size)
        # every group at the smaller of the two sizes: larger reference groups, or the held-out group
        stats = groups.at_size(min(int(size), largest))
        for k, v in stats.line_fit(groups.accuracy, ref).predict(tgt[at]).items():
            out[k][at] = v
    return out


def _pooled_line_predictions(groups: LogitGroups, held: int) -> dict[str, float]:
    """MaNo and the nuclear norm on the held-out corruption's groups taken together. The nuclear
    norm at the smaller of the pool's and the largest reference group's size, the pool scored
    over blocks of that size (as ``iqa-kit audit`` scores a set larger than its groups)."""
    ref = groups.corruption != held
    where = np.flatnonzero(groups.corruption == held)
    rows = np.concatenate([groups.members[g] for g in where])
    size = min(int(rows.size), int(groups.stats.n[ref].max()))
    fit = groups.at_size(size).line_fit(groups.accuracy, ref)
    mano = pooled_mano_score(fit.scores["mano"][where], groups.stats.n[where])
    nuclear = float(block_nuclear_scores(groups.logits, rows, size).mean())
    return {"mano": float(fit.lines["mano"].predict(mano)), "nuclear": float(fit.lines["nuclear"].predict(nuclear))}


def _cot_predictions(
    scores: ScoreSet, logits: ModelLogits, ref: np.ndarray, tgt: np.ndarray, inv: np.ndarray, n_groups: int,
    temperature: float,
) -> tuple[np.ndarray, float | None]:
    """COT's accuracy per held-out severity group and on the groups pooled (None for one
    group); the marginal from the reference labels, the softmax at the temperature fitted on
    the clean rows."""
    marginal = label_marginal(scores.label[ref], logits.classes)
    groups = [cot_accuracy(logits.array, logits.rows[tgt[inv == j]], marginal, temperature=temperature)
              for j in range(n_groups)]
    pooled = cot_accuracy(logits.array, logits.rows[tgt], marginal, temperature=temperature) if n_groups > 1 else None
    return np.asarray(groups), pooled


@dataclass(frozen=True)
class AgreementSet:
    """The task models that agreement-on-the-line compares, with their aligned ``pred``."""

    models: list[str]
    preds: np.ndarray  # (models, rows of the scores)


def agreement_set(scores: ScoreSet, predictions: dict[str, np.ndarray], logits: dict[str, ModelLogits]) -> AgreementSet | None:
    """The labelled task models with logits and ``pred``; None when fewer than three."""
    models = [k for k in logits if k in predictions and k in scores.m]
    if len(models) < ALINE_MIN_MODELS:
        return None
    return AgreementSet(models, np.vstack([predictions[k] for k in models]))


def _aline_predictions(
    scores: ScoreSet, models: AgreementSet, model: str, held_rows: np.ndarray, inv: np.ndarray, n_groups: int
) -> dict[str, tuple[np.ndarray, float | None]]:
    """ALine-S and ALine-D of ``model`` per held-out severity group and on the groups pooled
    (None for one group), clean rows as in distribution."""
    clean = scores.clean_mask()
    acc_id = np.asarray([scores.m[k][clean].mean() for k in models.models])
    agr_id = agreement(models.preds[:, clean])
    i = models.models.index(model)
    per_group = [aline(acc_id, agr_id, agreement(models.preds[:, held_rows[inv == j]])) for j in range(n_groups)]
    pooled = aline(acc_id, agr_id, agreement(models.preds[:, held_rows])) if n_groups > 1 else None
    return {method: (np.asarray([g[method][i] for g in per_group]),
                     float(pooled[method][i]) if pooled is not None else None)
            for method in ("aline_s", "aline_d")}


@dataclass(frozen=True)
class LogitContext:
    """What the logit estimators need across folds: each model's logits and group statistics,
    and the models agreement-on-the-line compares."""

    logits: dict[str, ModelLogits]
    groups: dict[str, LogitGroups]
    agreement: AgreementSet | None
    cot: bool
    temperature: dict[str, float]  # per model, fitted on the clean rows (in distribution, always reference)


def logit_context(
    scores: ScoreSet, logits: dict[str, ModelLogits] | None, predictions: dict[str, np.ndarray]
) -> LogitContext | None:
    """The context for the task models with logits; None when no model has them."""
    logits = {k: v for k, v in (logits or {}).items() if k in scores.m}
    if not logits:
        return None
    cot = pot_available()
    if not cot:
        warnings.warn(POT_MISSING, stacklevel=3)
    groups = {k: logit_groups(scores, scores.m[k], v) for k, v in logits.items()}
    clean = scores.clean_mask()
    temperature = {k: fit_temperature(v.array, v.rows[clean], scores.label[clean]) for k, v in logits.items()}
    return LogitContext(logits, groups, agreement_set(scores, predictions, logits), cot, temperature)


def logit_fold_predictions(
    scores: ScoreSet, model: str, ctx: LogitContext | None, held: int, fold_ref: np.ndarray,
    fold_tgt: np.ndarray, severities: np.ndarray, inv: np.ndarray,
) -> list[Prediction]:
    """Every logit estimator's prediction for one task model and held-out corruption ``held``:
    per severity group and, with two or more, on the groups pooled."""
    if ctx is None or model not in ctx.logits:
        return []
    groups = ctx.groups[model]
    pooled = _pooled_line_predictions(groups, held) if severities.size > 1 else {}
    out = {k: (v, pooled.get(k)) for k, v in _line_predictions(groups, held, severities).items()}
    if ctx.cot:
        out["cot"] = _cot_predictions(scores, ctx.logits[model], fold_ref, fold_tgt, inv, severities.size,
                                      ctx.temperature[model])
    preds: list[Prediction] = [(k, model, "logits", "own", v, p) for k, (v, p) in out.items()]
    if ctx.agreement is not None and model in ctx.agreement.models:
        aline_preds = _aline_predictions(scores, ctx.agreement, model, fold_tgt, inv, severities.size)
        preds += [(k, model, "pred", "agreement", v, p) for k, (v, p) in aline_preds.items()]
    return preds
