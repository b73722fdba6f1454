"""How well ``learned_q`` transfers: to a task model it never saw, to corruption families it never saw.

Every ``learned_q`` value here is cross-fitted by image (``n_folds`` folds of images: each
row is predicted by a model that never saw its image), so every image is a test image once
and the tables use all of them. Against it, on the same rows:

- point-wise AUC for the test model's correctness (NR-IQA metrics oriented by the sign of
  their AUC on the *training* correctness, never the test model's), clustered-DeLong SE
  and the paired clustered DeLong test of ``learned_q`` against each (Obuchowski: images
  are the independent units);
- group |SRCC| of mean Q against accuracy over (corruption, severity) groups
  (:func:`iqa_lib.analysis.groupwise.groupwise`, with its bootstrap interval);
- the accuracy error of the Q-prior (:func:`iqa_lib.analysis.prior.estimators.fit_q_prior`)
  and of the Q-line (a line of accuracy on the mean Q over the reference's groups,
  :func:`iqa_lib.analysis.prior.estimators.fit_q_line`) on held-out corruptions,
  beside the no-shift baseline (the reference accuracy), summarised by
  :func:`iqa_lib.analysis.prior.validation.summarize` (intervals over corruptions).

Two designs: leave one model out (train on some task models, test on another) with
leave-one-corruption-out priors, and leave one corruption family out (train on Lite0 and
Lite1 without the family, test Lite2 on it: model and family both held out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from iqa_lib import defaults
from iqa_lib.analysis.groupwise import group_codes, groupwise
from iqa_lib.analysis.io import KEYS, ScoreSet, load_scores
from iqa_lib.analysis.learned_q import TrainSettings, fit_model, image_folds, read_embeddings
from iqa_lib.analysis.prior.estimators import fit_q_line, fit_q_prior, group_mean
from iqa_lib.analysis.prior.validation import TABLE_COLUMNS, leave_one_corruption_out, summarize
from iqa_lib.scorers.qfeature_columns import FEATURE_COLUMNS
from iqa_lib.stats.delong import delong, paired_z
from iqa_lib.stats.logistic import auc_score

LEARNED = ("learned_q", "q")
FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}


INPUTS = ("features", "embedding", "both")  # what learned_q reads: f_* columns, a backbone's embedding, both


@dataclass
class EvalData:
    """Score files aligned (a :class:`ScoreSet`), the learned_q features of the same rows and,
    optionally, a backbone's embeddings of them."""

    scores: ScoreSet
    features: np.ndarray
    nr_iqa: list[str]
    embedding: np.ndarray | None = None
    backbone: str | None = None

    def inputs(self, which: str) -> tuple[np.ndarray, tuple[str, ...], str | None]:
        """The input matrix, feature names and backbone of ``which`` (one of :data:`INPUTS`)."""
        if which == "features":
            return self.features, FEATURE_COLUMNS, None
        if self.embedding is None or which not in INPUTS:
            raise ValueError(f"inputs {which!r}: need one of {INPUTS}, embeddings for anything but 'features'")
        if which == "embedding":
            return self.embedding, (), self.backbone
        return np.concatenate([self.features, self.embedding], axis=1), FEATURE_COLUMNS, self.backbone


def load_eval_data(scores_dir: str | Path, features_file: str | Path, scorers: Sequence[str],
                   embeddings: str | Path | None = None, backbone: str | None = None) -> EvalData:
    """The named score files of ``scores_dir``, the features of ``features_file`` and the
    ``embeddings`` (:func:`iqa_lib.analysis.learned_q.read_embeddings`) of ``backbone``, row-aligned."""
    scores = load_scores(scores_dir, list(scorers))
    df = pq.read_table(features_file, columns=[*KEYS, *FEATURE_COLUMNS]).to_pandas()
    df = df.astype({"image_id": str, "corruption": str})
    keys = scores.keys_frame().astype({"image_id": str, "corruption": str})
    merged = keys.merge(df, on=list(KEYS), how="left", validate="one_to_one")
    x = merged[list(FEATURE_COLUMNS)].to_numpy(np.float64)
    have = ~np.isnan(x).any(axis=1)  # a features file of a subset of the images: those rows only
    if not have.any():
        raise ValueError(f"{features_file}: no features for any row of the score files in {scores_dir}")
    nr = [s for s, k in scores.kinds.items() if k == "nr_iqa"]
    kept = scores.take(np.flatnonzero(have))
    emb = None if embeddings is None else read_embeddings(embeddings, kept.keys_frame())
    return EvalData(kept, x[have], nr, emb, backbone)


def cross_fitted(ev: EvalData, train_models: Sequence[str], allowed: np.ndarray, settings: TrainSettings,
                 n_folds: int = defaults.N_FOLDS, inputs: str = "features") -> np.ndarray:
    """Out-of-fold q for every row: fold k's images predicted by a model fitted on the other
    folds' ``allowed`` rows of ``train_models``, reading ``inputs`` (one of :data:`INPUTS`)."""
    data, names, backbone = ev.inputs(inputs)
    folds = image_folds(ev.scores.image, n_folds, settings.seed)
    q = np.empty(ev.scores.n_rows)
    for k in range(n_folds):
        fit_rows = (folds != k) & allowed
        x = np.concatenate([data[fit_rows]] * len(train_models))
        y = np.concatenate([ev.scores.m[m][fit_rows] for m in train_models])
        model = fit_model(x, y, settings, names, backbone)
        q[folds == k] = model.predict(data[folds == k])
    return q


def set_learned(ev: EvalData, q: np.ndarray) -> None:
    """Put cross-fitted learned_q values among the scores (an NR-IQA-kind Q)."""
    ev.scores.q[LEARNED] = q
    ev.scores.kinds[LEARNED[0]] = "nr_iqa"


def _orientation(q: np.ndarray, ys: Sequence[np.ndarray]) -> float:
    """+1 when higher q goes with correct on the training correctness, else -1."""
    return 1.0 if np.mean([auc_score(q, y) for y in ys]) >= 0.5 else -1.0


def auc_rows(ev: EvalData, test_model: str, rows: np.ndarray, orient_rows: np.ndarray,
             train_models: Sequence[str]) -> pd.DataFrame:
    """AUC of learned_q, each NR-IQA metric (oriented on ``orient_rows``) and the test model's
    q_p for its correctness on ``rows``, with SE and paired DeLong of learned_q against each."""
    s = ev.scores
    names = [LEARNED, *[(n, "q") for n in ev.nr_iqa], (test_model, "q_p")]
    signs = [1.0] + [_orientation(s.q[(n, "q")][orient_rows], [s.m[m][orient_rows] for m in train_models])
                     for n in ev.nr_iqa] + [1.0]
    mat = np.stack([sign * s.q[q][rows] for q, sign in zip(names, signs, strict=True)])
    res = delong(mat, s.m[test_model][rows], clusters=s.image[rows])
    out = []
    for i, (q, sign) in enumerate(zip(names, signs, strict=True)):
        test = paired_z(res.auc, res.cov, 0, i) if i else None
        out.append({"q": "own q_p" if q[1] == "q_p" else q[0], "orientation": "+" if sign > 0 else "-",
                    "auc": res.auc[i], "se": float(np.sqrt(res.cov[i, i])),
                    "diff_vs_learned_q": None if test is None else -test.diff,
                    "p_delong": None if test is None else test.p_value,
                    "n_rows": int(rows.sum()), "n_images": int(np.unique(s.image[rows]).size),
                    "n_correct": res.n_pos, "n_wrong": res.n_neg})
    return pd.DataFrame(out)


def srcc_rows(ev: EvalData, test_model: str, rows: np.ndarray, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Group |SRCC| (corruption x severity groups of ``rows``) of every Q with the test model."""
    sub = ev.scores.take(rows)
    qs = [LEARNED, *[(n, "q") for n in ev.nr_iqa], (test_model, "q_p")]
    table = groupwise(sub, qs, [test_model], n_bootstrap=n_bootstrap, seed=seed)
    table = table[table["stat"] == "srcc"]
    return table[["scorer", "q", "abs_r", "abs_ci_low", "abs_ci_high", "n"]].reset_index(drop=True)


def loco_prior(ev: EvalData, test_model: str, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Leave-one-corruption-out Q-prior errors (and the no-shift baseline, AC, ATC) for the test model."""
    qs = [LEARNED, *[(n, "q") for n in ev.nr_iqa], (test_model, "q_p")]
    table = leave_one_corruption_out(ev.scores, [test_model], qs)
    return summarize(table, n_bootstrap, seed)


def family_prior(ev: EvalData, test_model: str, family: Sequence[str], n_bootstrap: int,
                 seed: int) -> pd.DataFrame:
    """Q-prior and Q-line fitted on clean + the other families, errors on each (corruption,
    severity) of ``family``."""
    s = ev.scores
    m = s.m[test_model]
    names = np.asarray(s.corruptions)[s.corruption]
    ref = ~np.isin(names, family)
    ref_acc = float(m[ref].mean())
    qs = [LEARNED, *[(n, "q") for n in ev.nr_iqa], (test_model, "q_p")]
    groups = group_codes(s, include_clean=True)[0][ref]
    lines = {q: fit_q_line(s.q[q][ref], m[ref], groups) for q in qs}
    rows = []
    for c in family:
        tgt = np.flatnonzero(names == c)
        sev, inv = np.unique(s.severity[tgt], return_inverse=True)
        n = np.bincount(inv).astype(np.float64)
        actual = group_mean(m[tgt], inv, n)
        preds = [("reference", test_model, "m", "baseline", np.full(sev.size, ref_acc))]
        for q in qs:
            p = fit_q_prior(s.q[q][ref], m[ref]).predict_proba(s.q[q][tgt])
            kind = "own" if q[0] == test_model else "learned" if q == LEARNED else "nr_iqa"
            preds.append(("q_prior", q[0], q[1], kind, group_mean(p, inv, n)))
            preds.append(("q_line", q[0], q[1], kind, lines[q].predict(group_mean(s.q[q][tgt], inv, n))))
        rows += [{"method": meth, "scorer": sc, "q": v, "kind": kd, "task_model": test_model, "corruption": c,
                  "severity": int(sev[j]), "n": int(n[j]), "predicted": float(p[j]), "actual": float(actual[j]),
                  "reference_accuracy": ref_acc, "pooled": False} for meth, sc, v, kd, p in preds for j in range(sev.size)]
    table = pd.DataFrame(rows)
    table["error"] = table["predicted"] - table["actual"]
    table["abs_error"] = table["error"].abs()
    table["abs_error_pts"] = 100 * table["abs_error"]
    return summarize(table[TABLE_COLUMNS], n_bootstrap, seed)
