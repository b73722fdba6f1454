"""What else was tried for learned_q's transfer, and where the goals sit (docs/mini-reproduction/learned_q.md).

Issue 25's Done-when asks, on a held-out model (Lite2) and on held-out corruption families,
for a point-wise AUC at least 0.10 above the best NR-IQA metric's and an accuracy prior
(here the Q-line) within half the no-shift error. This prints, for each variant of the
learned_q inputs, the held-out model's AUC and leave-one-corruption-out Q-line error, and
for each held-out family (network and line both without it) the AUC on the family's rows
and the Q-line error on its groups; beside them the goals, and the same figures for the
training models' own confidence (Lite0's and Lite1's q_p: a classifier's output, not a
task-agnostic score, but the strongest proxy the data hold).

Variants (every value cross-fitted by image, 5 folds, trained on Lite0 + Lite1 correctness):

- ``features``: the 60 f_* features, one-hidden-layer network (the shipped default's inputs);
- ``deviation``: the features and their absolute z-scores against the clean training images
  (a distortion unseen in training should still read as "far from natural");
- ``deviation-logistic``: the absolute z-scores alone, logistic regression (no room to learn
  a direction that reverses on an unseen family);
- ``ensemble5``: the features, five networks (seeds) with their logits averaged;
- ``features+lite0conf``: the features and Lite0's q_p and q_h (a backbone's classifier head
  on top of its embedding);
- ``lite0conf``: Lite0's q_p and q_h alone, through the network.

    python benchmarks/learned_q_variants.py SCORES_DIR FEATURES_FILE [--variants ...]

SCORES_DIR and FEATURES_FILE as for benchmarks/learned_q_eval.py.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from iqa_lib.analysis.groupwise import group_codes
from iqa_lib.analysis.learned_q import TrainSettings, fit_model, image_folds
from iqa_lib.analysis.learned_q_eval import FAMILIES, load_eval_data
from iqa_lib.analysis.prior.estimators import fit_q_line
from iqa_lib.stats.logistic import auc_score

SCORERS = ("tv", "brisque", "niqe", "piqe", "lite0", "lite1", "lite2")
TRAIN, TEST = ("lite0", "lite1"), "lite2"
FOLDS = 5
VARIANTS = ("features", "deviation", "deviation-logistic", "ensemble5", "features+lite0conf", "lite0conf")


class Design:
    """The aligned data, corruption names per row and the test model's correctness."""

    def __init__(self, scores_dir: str, features_file: str):
        self.ev = load_eval_data(scores_dir, features_file, SCORERS)
        s = self.ev.scores
        self.names = np.asarray(s.corruptions)[s.corruption]
        self.y = s.m[TEST]
        self.folds = image_folds(s.image, FOLDS, TrainSettings().seed)
        self.conf = np.column_stack([s.q[("lite0", "q_p")], s.q[("lite0", "q_h")]])
        self.groups = group_codes(s, include_clean=True)[0]

    def inputs(self, variant: str, fit_rows: np.ndarray) -> np.ndarray:
        """The input matrix of ``variant``; z-scores from the clean rows among ``fit_rows``."""
        x = self.ev.features
        if variant in ("features", "ensemble5"):
            return x
        if variant == "features+lite0conf":
            return np.concatenate([x, self.conf], axis=1)
        if variant == "lite0conf":
            return self.conf
        clean = fit_rows & (self.names == "clean")
        sd = x[clean].std(axis=0)
        dev = np.abs(x - x[clean].mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        return np.concatenate([x, dev], axis=1) if variant == "deviation" else dev

    def cross_fitted(self, variant: str, allowed: np.ndarray) -> np.ndarray:
        """Out-of-fold q for every row, fitted on ``allowed`` rows of the other folds (an ensemble:
        the sigmoid of its networks' mean logit, which one network with their hidden units side
        by side would give)."""
        settings = TrainSettings(hidden=0 if variant == "deviation-logistic" else TrainSettings().hidden)
        seeds = 5 if variant == "ensemble5" else 1
        s = self.ev.scores
        z = np.zeros(s.n_rows)
        for k in range(FOLDS):
            fit_rows = (self.folds != k) & allowed
            x_all = self.inputs(variant, fit_rows)
            x = np.concatenate([x_all[fit_rows]] * len(TRAIN))
            y = np.concatenate([s.m[m][fit_rows] for m in TRAIN])
            for seed in range(seeds):
                model = fit_model(x, y, replace(settings, seed=settings.seed + seed), ())
                z[self.folds == k] += model.logit(x_all[self.folds == k]) / seeds
        return 0.5 * (1.0 + np.tanh(0.5 * z))

    def line_error(self, q: np.ndarray, ref: np.ndarray, corruptions: list[str]) -> float:
        """Mean |error| (points) of the Q-line fitted on ``ref`` rows over the groups of ``corruptions``."""
        s = self.ev.scores
        line = fit_q_line(q[ref], self.y[ref], self.groups[ref])
        errs = [abs(float(line.predict(q[g].mean())) - self.y[g].mean())
                for c in corruptions for v in np.unique(s.severity[self.names == c])
                for g in [(self.names == c) & (s.severity == v)]]
        return 100 * float(np.mean(errs))

    def baseline_error(self, ref: np.ndarray, corruptions: list[str]) -> float:
        """The no-shift baseline (the reference accuracy) on the same groups."""
        s = self.ev.scores
        acc = self.y[ref].mean()
        return 100 * float(np.mean([abs(acc - self.y[(self.names == c) & (s.severity == v)].mean())
                                    for c in corruptions for v in np.unique(s.severity[self.names == c])]))

    def best_nr_iqa(self, rows: np.ndarray, orient: np.ndarray) -> tuple[str, float]:
        """The best NR-IQA metric's AUC on ``rows``, each oriented by its AUC for the training
        models' correctness on ``orient`` (never the test model's)."""
        s = self.ev.scores
        best = ("", 0.0)
        for name in self.ev.nr_iqa:
            q = s.q[(name, "q")]
            sign = 1.0 if np.mean([auc_score(q[orient], s.m[m][orient]) for m in TRAIN]) >= 0.5 else -1.0
            auc = auc_score(sign * q[rows], self.y[rows])
            best = max(best, (name, auc), key=lambda t: t[1])
        return best


def settings_of(design: Design) -> list[tuple[str, np.ndarray, list[str], np.ndarray]]:
    """(name, rows scored, held-out corruptions, allowed training rows) of each design."""
    everything = np.ones(design.ev.scores.n_rows, dtype=bool)
    out = [("held-out model", everything, [c for c in design.ev.scores.corruptions if c != "clean"], everything)]
    for family, members in FAMILIES.items():
        inside = np.isin(design.names, members)
        out.append((f"+ {family} held out", inside, list(members), ~inside))
    return out


def evaluate(design: Design, q_of: Callable[[np.ndarray], np.ndarray], name: str) -> list[dict]:
    """One row per design: AUC on its rows, Q-line error (leave one corruption out on the
    held-out model; the family's groups otherwise)."""
    rows = []
    for label, scored, held, allowed in settings_of(design):
        q = q_of(allowed)
        if label == "held-out model":
            line = np.mean([design.line_error(q, design.names != c, [c]) for c in held])
        else:
            line = design.line_error(q, allowed, held)
        rows.append({"inputs": name, "design": label, "AUC": auc_score(q[scored], design.y[scored]),
                     "Q-line error (pts)": float(line)})
    return rows


def goals(design: Design) -> list[dict]:
    """The goal of each design: best NR-IQA AUC + 0.10, half the no-shift error."""
    out = []
    for label, scored, held, allowed in settings_of(design):
        name, auc = design.best_nr_iqa(scored, allowed)
        if label == "held-out model":
            base = np.mean([design.baseline_error(design.names != c, [c]) for c in held])
        else:
            base = design.baseline_error(allowed, held)
        out.append({"inputs": "goal: best NR-IQA + 0.10; half the no-shift error", "design": label,
                    "AUC": auc + 0.10, "Q-line error (pts)": base / 2, "best NR-IQA": f"{name} {auc:.3f}",
                    "no-shift error": base})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores_dir")
    ap.add_argument("features_file")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = ap.parse_args()
    design = Design(args.scores_dir, args.features_file)
    s = design.ev.scores
    rows = goals(design)
    for model in TRAIN:  # a training model's own confidence, for scale (nothing fitted)
        rows += evaluate(design, lambda _allowed, m=model: s.q[(m, "q_p")], f"{model} q_p (not task-agnostic)")
    for variant in args.variants:
        t0 = time.process_time()
        rows += evaluate(design, lambda allowed, v=variant: design.cross_fitted(v, allowed), variant)
        print(f"{variant}: {time.process_time() - t0:.0f} CPU-s", flush=True)
    table = pd.DataFrame(rows)
    print("\nGoals per design (NR-IQA oriented on the training models' correctness):\n")
    print(table.dropna(subset=["best NR-IQA"])[["design", "best NR-IQA", "no-shift error"]]
          .round(1).to_markdown(index=False))
    wide = table.pivot_table(index="inputs", columns="design", values=["AUC", "Q-line error (pts)"], sort=False)
    order = [label for label, *_ in settings_of(design)]
    wide = wide.reindex(columns=[(v, d) for v in ("AUC", "Q-line error (pts)") for d in order])
    wide.columns = [f"{'AUC' if v == 'AUC' else 'Q-line'}: {d.removeprefix('+ ').removesuffix(' held out')}"
                    for v, d in wide.columns]
    print(f"\nn: {s.n_rows} rows of {np.unique(s.image).size} images; test model {TEST}, trained on "
          f"{' + '.join(TRAIN)}; AUC on the design's rows, Q-line mean |error| over its held-out groups\n")
    print(wide.round(3).to_markdown())


if __name__ == "__main__":
    main()
