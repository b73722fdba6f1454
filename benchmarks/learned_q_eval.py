"""learned_q against the NR-IQA metrics and the held-out model's own confidence (issue 25 item 4).

Prints the tables of docs/mini-reproduction/learned_q.md: leave one model out (train on some
EfficientNet-Lite models, test on another) and leave one corruption family out (train on
Lite0 + Lite1 without the family, test Lite2 on it), each with point-wise AUC (paired
clustered DeLong against learned_q), group |SRCC| and the Q-prior's and the Q-line's accuracy error beside
the no-shift baseline. Every learned_q value is cross-fitted by image (5 folds).

    python benchmarks/learned_q_eval.py SCORES_DIR FEATURES_FILE [--folds 5] [--boot 1000]
        [--embeddings EMB.npy --inputs features embedding both] [--compare-only]

SCORES_DIR holds tv, brisque, niqe, piqe, lite0, lite1 and lite2 .parquet score files;
FEATURES_FILE is a learned_q score file (`iqa-kit score --scorer learned_q`) of the same
manifest or a subset of its images (only the rows with features are used). EMB.npy (with
EMB.keys.parquet beside it, from benchmarks/learned_q_embeddings.py) holds a backbone's
embeddings of those rows: the tables are then printed for each of ``--inputs`` (the f_*
features, the embedding alone, both), followed by one table comparing them on the held-out
model and families (paired clustered DeLong against the features-only model).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from iqa_lib.analysis.learned_q import TrainSettings
from iqa_lib.analysis.learned_q_eval import (
    FAMILIES,
    INPUTS,
    EvalData,
    auc_rows,
    cross_fitted,
    family_prior,
    load_eval_data,
    loco_prior,
    set_learned,
    srcc_rows,
)
from iqa_lib.stats.delong import delong, paired_z

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
    keep = summary[summary["method"].isin(["q_prior", "q_line", "reference", "atc_mc"])]
    t = keep.assign(**{"mean |error| pts [95% CI]": [
        f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in
        zip(keep["mean_abs_error_pts"], keep["mean_ci_low"], keep["mean_ci_high"], strict=True)]})
    return t[["method", "scorer", "q", "mean |error| pts [95% CI]", "bias_pts", "n_groups",
              "n_corruptions"]].to_markdown(index=False, floatfmt=".1f")


def _print_sections(auc: pd.DataFrame, srcc: pd.DataFrame, prior: pd.DataFrame, titles: tuple[str, str, str]) -> None:
    """One design's three sections: point-wise AUC (with n), group-wise |SRCC|, the Q-prior's error."""
    n = auc.iloc[0]
    print(f"{titles[0]}, n = {n['n_rows']} rows of {n['n_images']} images "
          f"({n['n_correct']} correct, {n['n_wrong']} wrong):\n")
    print(_fmt_auc(auc))
    print(f"\n{titles[1]}:\n")
    print(_fmt_srcc(srcc))
    print(f"\n{titles[2]}:\n")
    print(_fmt_prior(prior))


_FITTED: dict[tuple, np.ndarray] = {}


def fitted(ev: EvalData, train_models: tuple[str, ...], allowed: np.ndarray, settings: TrainSettings,
           folds: int, inputs: str) -> np.ndarray:
    """cross_fitted, computed once per design and inputs (the comparison reuses the tables' fits)."""
    key = (train_models, allowed.tobytes(), inputs)
    if key not in _FITTED:
        _FITTED[key] = cross_fitted(ev, train_models, allowed, settings, folds, inputs)
    return _FITTED[key]


def model_out(ev: EvalData, settings: TrainSettings, folds: int, boot: int, inputs: str = "features") -> None:
    everything = np.ones(ev.scores.n_rows, dtype=bool)
    for train_models, test in MODEL_OUT:
        t0 = time.process_time()
        reused = (train_models, everything.tobytes(), inputs) in _FITTED
        set_learned(ev, fitted(ev, train_models, everything, settings, folds, inputs))
        cost = "the fit above, reused" if reused else f"{time.process_time() - t0:.0f} CPU-s to fit {folds} folds"
        print(f"\n### Train on {' + '.join(train_models)}, test on {test} ({cost})\n")
        _print_sections(auc_rows(ev, test, everything, everything, train_models),
                        srcc_rows(ev, test, everything, boot, settings.seed),
                        loco_prior(ev, test, boot, settings.seed),
                        ("Point-wise", "Group-wise (corruption x severity)",
                         "Q-prior and Q-line, leave one corruption out (reference = clean + the other 14 corruptions)"))


def family_out(ev: EvalData, settings: TrainSettings, folds: int, boot: int, inputs: str = "features",
               test: str = "lite2") -> None:
    names = np.asarray(ev.scores.corruptions)[ev.scores.corruption]
    for family, members in FAMILIES.items():
        inside = np.isin(names, members)
        set_learned(ev, fitted(ev, ("lite0", "lite1"), ~inside, settings, folds, inputs))
        print(f"\n### Held-out family: {family} ({', '.join(members)}); trained on lite0 + lite1 without it, "
              f"test {test}\n")
        _print_sections(auc_rows(ev, test, inside, ~inside, ("lite0", "lite1")),
                        srcc_rows(ev, test, inside, boot, settings.seed),
                        family_prior(ev, test, members, boot, settings.seed),
                        ("Point-wise on the family's rows", "Group-wise over the family's groups",
                         "Q-prior and Q-line fitted on clean + the other families, error on the family's groups"))


def _prior_error(summary: pd.DataFrame, scorer: str, method: str = "q_prior") -> str:
    row = summary[(summary["method"] == ("reference" if scorer == "reference" else method))
                  & ((summary["scorer"] == scorer) | (scorer == "reference"))].iloc[0]
    return f"{row['mean_abs_error_pts']:.1f} [{row['mean_ci_low']:.1f}, {row['mean_ci_high']:.1f}]"


def _compare_design(ev: EvalData, design: str, qs: dict[str, np.ndarray], rows: np.ndarray,
                    orient_rows: np.ndarray, prior: Callable[[], pd.DataFrame], test: str = "lite2") -> list[dict]:
    """One design: AUC of each input's learned_q (paired DeLong vs features-only), best NR-IQA, Q-prior."""
    s = ev.scores
    y, clusters = s.m[test][rows], s.image[rows]
    res = delong(np.stack([q[rows] for q in qs.values()]), y, clusters=clusters)
    set_learned(ev, qs[next(iter(qs))])
    base = auc_rows(ev, test, rows, orient_rows, ("lite0", "lite1"))
    nr = base[~base["q"].isin(["learned_q", "own q_p"])].sort_values("auc").iloc[-1]
    out = []
    for i, (name, q) in enumerate(qs.items()):
        set_learned(ev, q)
        summary = prior()
        test_i = paired_z(res.auc, res.cov, i, 0) if i else None
        out.append({"design": design, "learned_q inputs": name,
                    "AUC (SE)": f"{res.auc[i]:.3f} ({np.sqrt(res.cov[i, i]):.3f})",
                    "- features-only (p)": "" if test_i is None else f"{test_i.diff:+.3f} ({test_i.p_value:.1e})",
                    "best NR-IQA AUC": f"{nr['q']} {nr['auc']:.3f}",
                    "learned_q - best NR-IQA": f"{res.auc[i] - nr['auc']:+.3f}",
                    "Q-prior err pts": _prior_error(summary, "learned_q"),
                    "Q-line err pts": _prior_error(summary, "learned_q", "q_line"),
                    "no-shift err pts": _prior_error(summary, "reference"),
                    "n rows / images": f"{int(rows.sum())} / {np.unique(clusters).size}"})
    return out


def compare(ev: EvalData, settings: TrainSettings, folds: int, boot: int, inputs: list[str]) -> None:
    """One table: learned_q with each of ``inputs`` on Lite2 held out, and on each held-out family."""
    everything = np.ones(ev.scores.n_rows, dtype=bool)
    train = ("lite0", "lite1")
    table = _compare_design(ev, "Lite2 held out (LOCO prior)",
                            {i: fitted(ev, train, everything, settings, folds, i) for i in inputs},
                            everything, everything, lambda: loco_prior(ev, "lite2", boot, settings.seed))
    names = np.asarray(ev.scores.corruptions)[ev.scores.corruption]
    for family, members in FAMILIES.items():
        inside = np.isin(names, members)
        qs = {i: fitted(ev, train, ~inside, settings, folds, i) for i in inputs}
        table += _compare_design(ev, f"Lite2 + {family} held out", qs, inside, ~inside,
                                 lambda m=members: family_prior(ev, "lite2", m, boot, settings.seed))
    print(pd.DataFrame(table).to_markdown(index=False, disable_numparse=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores_dir")
    parser.add_argument("features")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=TrainSettings.hidden)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embeddings", help="a backbone's embeddings of the rows (.npy, keys beside it)")
    parser.add_argument("--backbone", default="efficientnet_lite:lite0")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, help="default: features (+ embedding, both "
                        "with --embeddings)")
    parser.add_argument("--compare-only", action="store_true",
                        help="print only the comparison table (Lite2 held out, then each family held out)")
    args = parser.parse_args()
    inputs = args.inputs or (list(INPUTS) if args.embeddings else ["features"])
    ev = load_eval_data(args.scores_dir, args.features, SCORERS, args.embeddings,
                        args.backbone if args.embeddings else None)
    settings = TrainSettings(hidden=args.hidden, seed=args.seed)
    print(f"{ev.scores.n_rows} rows of {np.unique(ev.scores.image).size} images with features; "
          f"learned_q: {'logistic regression' if args.hidden == 0 else f'MLP, {args.hidden} ReLU units'}, "
          f"{args.folds}-fold cross-fitting by image, seed {args.seed}"
          + (f"; embedding: {args.backbone}" if args.embeddings else ""))
    for which in [] if args.compare_only else inputs:
        print(f"\n# learned_q inputs: {which}")
        print("\n## Leave one model out")
        model_out(ev, settings, args.folds, args.boot, which)
        print("\n## Leave one corruption family out")
        family_out(ev, settings, args.folds, args.boot, which)
    if len(inputs) > 1 or args.compare_only:
        print("\n# learned_q with and without the embedding (test model Lite2; trained on Lite0 + Lite1)\n")
        compare(ev, settings, args.folds, args.boot, inputs)


if __name__ == "__main__":
    main()
