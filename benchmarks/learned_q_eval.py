"""learned_q against the NR-IQA metrics and the held-out model's own confidence (issue 25 item 4).

Prints the tables of docs/mini-reproduction/learned_q.md: leave one model out (train on some
EfficientNet-Lite models, test on another) and leave one corruption family out (train on
Lite0 + Lite1 without the family, test Lite2 on it), each with point-wise AUC (paired
clustered DeLong against learned_q), group |SRCC| and the Q-prior's accuracy error beside
the no-shift baseline. Every learned_q value is cross-fitted by image (5 folds).

    python benchmarks/learned_q_eval.py SCORES_DIR FEATURES_FILE [--folds 5] [--boot 1000]

SCORES_DIR holds tv, brisque, niqe, piqe, lite0, lite1 and lite2 .parquet score files;
FEATURES_FILE is a learned_q score file (`iqa-kit score --scorer learned_q`) of the same
manifest or a subset of its images (only the rows with features are used).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from iqa_lib.analysis.learned_q import TrainSettings
from iqa_lib.analysis.learned_q_eval import (
    FAMILIES,
    EvalData,
    auc_rows,
    cross_fitted,
    family_prior,
    load_eval_data,
    loco_prior,
    set_learned,
    srcc_rows,
)

SCORERS = ("tv", "brisque", "niqe", "piqe", "lite0", "lite1", "lite2")
MODEL_OUT = (((("lite0",), "lite1")), (("lite0",), "lite2"), (("lite1",), "lite0"), (("lite1",), "lite2"),
             (("lite0", "lite1"), "lite2"))


def _fmt_auc(table: pd.DataFrame) -> str:
    t = table.copy()
    t["AUC (SE)"] = [f"{a:.3f} ({s:.3f})" for a, s in zip(t["auc"], t["se"], strict=True)]
    t["learned_q - this"] = ["" if d is None or pd.isna(d) else f"{-d:+.3f}" for d in t["diff_vs_learned_q"]]
    t["p (DeLong)"] = ["" if p is None or pd.isna(p) else f"{p:.1e}" for p in t["p_delong"]]
    return t[["q", "orientation", "AUC (SE)", "learned_q - this", "p (DeLong)"]].to_markdown(index=False)


def _fmt_srcc(table: pd.DataFrame) -> str:
    t = table.assign(**{"|SRCC| [95% CI]": [f"{r:.3f} [{lo:.2f}, {hi:.2f}]" for r, lo, hi in
                                           zip(table["abs_r"], table["abs_ci_low"], table["abs_ci_high"],
                                               strict=True)]})
    return t[["scorer", "q", "|SRCC| [95% CI]", "n"]].rename(columns={"n": "groups"}).to_markdown(index=False)


def _fmt_prior(summary: pd.DataFrame) -> str:
    keep = summary[summary["method"].isin(["q_prior", "reference", "atc_mc"])]
    t = keep.assign(**{"mean |error| pts [95% CI]": [
        f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in
        zip(keep["mean_abs_error_pts"], keep["mean_ci_low"], keep["mean_ci_high"], strict=True)]})
    return t[["method", "scorer", "q", "mean |error| pts [95% CI]", "bias_pts", "n_groups",
              "n_corruptions"]].to_markdown(index=False, floatfmt=".1f")


def model_out(ev: EvalData, settings: TrainSettings, folds: int, boot: int) -> None:
    everything = np.ones(ev.scores.n_rows, dtype=bool)
    for train_models, test in MODEL_OUT:
        t0 = time.process_time()
        set_learned(ev, cross_fitted(ev, train_models, everything, settings, folds))
        print(f"\n### Train on {' + '.join(train_models)}, test on {test} "
              f"({time.process_time() - t0:.0f} CPU-s to fit {folds} folds)\n")
        table = auc_rows(ev, test, everything, everything, train_models)
        n = table.iloc[0]
        print(f"Point-wise, n = {n['n_rows']} rows of {n['n_images']} images "
              f"({n['n_correct']} correct, {n['n_wrong']} wrong):\n")
        print(_fmt_auc(table))
        print("\nGroup-wise (corruption x severity):\n")
        print(_fmt_srcc(srcc_rows(ev, test, everything, boot, settings.seed)))
        print("\nQ-prior, leave one corruption out (reference = clean + the other 14 corruptions):\n")
        print(_fmt_prior(loco_prior(ev, test, boot, settings.seed)))


def family_out(ev: EvalData, settings: TrainSettings, folds: int, boot: int, test: str = "lite2") -> None:
    names = np.asarray(ev.scores.corruptions)[ev.scores.corruption]
    for family, members in FAMILIES.items():
        inside = np.isin(names, members)
        set_learned(ev, cross_fitted(ev, ("lite0", "lite1"), ~inside, settings, folds))
        print(f"\n### Held-out family: {family} ({', '.join(members)}); trained on lite0 + lite1 without it, "
              f"test {test}\n")
        table = auc_rows(ev, test, inside, ~inside, ("lite0", "lite1"))
        n = table.iloc[0]
        print(f"Point-wise on the family's rows, n = {n['n_rows']} rows of {n['n_images']} images "
              f"({n['n_correct']} correct, {n['n_wrong']} wrong):\n")
        print(_fmt_auc(table))
        print("\nGroup-wise over the family's groups:\n")
        print(_fmt_srcc(srcc_rows(ev, test, inside, boot, settings.seed)))
        print("\nQ-prior fitted on clean + the other families, error on the family's groups:\n")
        print(_fmt_prior(family_prior(ev, test, members, boot, settings.seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores_dir")
    parser.add_argument("features")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=TrainSettings.hidden)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ev = load_eval_data(args.scores_dir, args.features, SCORERS)
    settings = TrainSettings(hidden=args.hidden, seed=args.seed)
    print(f"{ev.scores.n_rows} rows of {np.unique(ev.scores.image).size} images with features; "
          f"learned_q: {'logistic regression' if args.hidden == 0 else f'MLP, {args.hidden} ReLU units'}, "
          f"{args.folds}-fold cross-fitting by image, seed {args.seed}")
    print("\n## Leave one model out")
    model_out(ev, settings, args.folds, args.boot)
    print("\n## Leave one corruption family out")
    family_out(ev, settings, args.folds, args.boot)


if __name__ == "__main__":
    main()
