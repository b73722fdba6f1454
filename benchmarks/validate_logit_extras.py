"""The audit's estimators on held-out shifts, logit-based ones included (docs/mini-reproduction/prior.md).

A reference is made (``iqa-kit reference``'s code) from a task model's score file on clean
ImageNet images and ImageNet-C, with the logits kept beside it; every (corruption, severity)
group of another score file of the same model (e.g. ImageNet-C's four extra corruptions,
rendered from the same images and scored with ``--keep-logits``) is then predicted by the
audit's code (:func:`iqa_lib.audit.accuracy.predict_accuracy`), fitted on the whole reference:
ATC-MC, ATC-NE, AC, DoC, MaNo and the nuclear norm, and the one the audit states. Printed: per
method the mean and largest absolute error in accuracy points over the sets, per corruption,
how often each method was the stated one, and the coverage and mean width of each method's
90% prediction interval (its own leave-one-corruption-out conformal interval, withheld when a
set is out of reference). No COT: the audit has no labels for it.

    python benchmarks/validate_logit_extras.py REFERENCE_SCORES.parquet EXTRAS_SCORES.parquet
        [--subset N --draws K --seed S]

``--pool-severities``: one set per corruption, its severities pooled (2,500 images against
reference groups of 500 on the mini-reproduction). ``--subset N``: instead of each whole set, ``--draws`` random subsets of N of its images (without
replacement, seeded): the prediction interval must then also cover a small set's own sampling
spread (its per-image variance factor, kappa, is what this checks at small n).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.audit.accuracy import predict_accuracy
from iqa_lib.audit.reference import read_reference
from iqa_lib.pipeline.reference import ReferenceSettings, build_reference
from iqa_lib.scoring.logits import read_logits


def set_rows(extras: pd.DataFrame, pool: bool = False) -> list[tuple[str, int, np.ndarray]]:
    """Each (corruption, severity) group of the shifted score file (clean rows left out); with
    ``pool``, each corruption's severities together (severity 0 in the table): sets larger than
    a reference group."""
    shifted = extras[extras["corruption"] != "clean"]
    if pool:
        return [(c, 0, np.sort(idx.to_numpy())) for c, idx in shifted.groupby("corruption", observed=True).groups.items()]
    return [(c, int(s), idx.to_numpy()) for (c, s), idx in shifted.groupby(["corruption", "severity"]).groups.items()]


def draws_of(sets: list[tuple[str, int, np.ndarray]], subset: int | None, draws: int,
             seed: int) -> list[tuple[str, int, np.ndarray]]:
    """The sets themselves, or ``draws`` random subsets of ``subset`` rows of each."""
    if subset is None:
        return sets
    rng = np.random.default_rng(seed)
    return [(c, s, np.sort(rng.choice(idx, size=subset, replace=False)))
            for c, s, idx in sets if idx.size >= subset for _ in range(draws)]


def predict_sets(reference: Path, extras_file: Path, spec: str, n_bootstrap: int, subset: int | None = None,
                 draws: int = 1, seed: int = 0, pool: bool = False) -> pd.DataFrame:
    """One row per set (or subset) and method: predicted, actual, absolute error (points), stated."""
    extras = pd.read_parquet(extras_file)
    z = read_logits(extras_file, len(extras))
    if z is None:
        raise SystemExit(f"{extras_file}: no logits beside it; score it with --keep-logits")
    with tempfile.TemporaryDirectory() as tmp:
        path = build_reference(ReferenceSettings(spec, tmp, scores=reference, made_from="validation", progress=False))
        ref = read_reference(path)
        rows = []
        for corruption, severity, idx in draws_of(set_rows(extras, pool), subset, draws, seed):
            target = extras.iloc[idx].reset_index(drop=True)
            pred = predict_accuracy(ref, target, n_bootstrap=n_bootstrap, logits=np.asarray(z[idx]))
            actual = float(target["correct"].mean())
            for method, est in pred["estimates"].items():
                pi = est["prediction_interval"]
                rows.append({"corruption": corruption, "severity": severity, "n": len(idx), "method": method,
                             "predicted": est["value"], "actual": actual,
                             "error_pts": (est["value"] - actual) * 100,
                             "abs_error_pts": abs(est["value"] - actual) * 100,
                             "stated": method == pred["method"], "in_reference": pred["in_reference"],
                             "pi_width": np.nan if pi is None else pi[1] - pi[0],
                             "covered": pi is not None and pi[0] <= actual <= pi[1]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reference_scores", type=Path, help="the task model's score file on clean + ImageNet-C, logits kept")
    p.add_argument("extras_scores", type=Path, help="its score file on the held-out shifts, logits kept")
    p.add_argument("--spec", default="efficientnet_lite:lite0")
    p.add_argument("--n-bootstrap", type=int, default=200)
    p.add_argument("--csv", type=Path)
    p.add_argument("--subset", type=int, help="predict random subsets of this many images of each set")
    p.add_argument("--draws", type=int, default=5, help="subsets per set (with --subset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool-severities", action="store_true",
                   help="one set per corruption, its five severities together (larger than a reference group)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    table = predict_sets(args.reference_scores, args.extras_scores, args.spec, args.n_bootstrap, args.subset,
                         args.draws, args.seed, args.pool_severities)
    if args.csv:
        table.to_csv(args.csv, index=False)
    overall = table.groupby("method").agg(sets=("n", "size"), images=("n", "sum"),
                                          mean_abs_error_pts=("abs_error_pts", "mean"), bias_pts=("error_pts", "mean"),
                                          max_abs_error_pts=("abs_error_pts", "max"), stated=("stated", "sum"),
                                          pi_coverage=("covered", "mean"), pi_width=("pi_width", "mean"),
                                          in_reference=("in_reference", "sum"))
    print(overall.sort_values("mean_abs_error_pts").round(2).to_string())
    by_corruption = table.pivot_table(index="method", columns="corruption", values="abs_error_pts", aggfunc="mean")
    print("\nmean absolute error (points) per held-out corruption (its severity sets or their subsets):")
    print(by_corruption.round(2).to_string())
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
