"""Every accuracy prior from learned_q on held-out corruption families (docs/mini-reproduction/learned_q.md).

Issue 25 asks learned_q's accuracy prior to beat the no-shift baseline by half on a held-out
model (Lite2) and held-out corruption families. Besides the Q-prior and the Q-line of
``benchmarks/learned_q_eval.py``, this tries ATC with learned_q as its score (a threshold
on learned_q, fitted on the test model's correctness over clean and the other families, so
that the share of reference images above it equals their accuracy; the prediction is the
share of a held-out group above it): ATC is the steadiest estimator on the model's own
confidence, so if any prior from learned_q reaches the goal it is a candidate. learned_q is
cross-fitted by image and trained without the family (as in learned_q_eval's family tables).
Printed per inputs and family: mean absolute error in points over the family's (corruption,
severity) groups for each prior, the no-shift baseline and the goal (half of it).

    python benchmarks/learned_q_family_priors.py SCORES_DIR FEATURES_FILE [--embeddings EMB.npy]
        [--inputs features both]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from iqa_lib.analysis.learned_q import TrainSettings
from iqa_lib.analysis.learned_q_eval import (
    FAMILIES,
    INPUTS,
    LEARNED,
    cross_fitted,
    family_prior,
    load_eval_data,
    set_learned,
)
from iqa_lib.analysis.prior.estimators import fit_atc

SCORERS = ("tv", "brisque", "niqe", "piqe", "lite0", "lite1", "lite2")
TEST, TRAIN = "lite2", ("lite0", "lite1")


def atc_error(q: np.ndarray, m: np.ndarray, names: np.ndarray, severity: np.ndarray, family) -> float:
    """ATC on learned_q: fitted on the rows outside ``family``, mean |error| (points) over its groups."""
    inside = np.isin(names, family)
    threshold = fit_atc(q[~inside], m[~inside])
    errors = [abs(threshold.predict(q[g]) - m[g].mean())
              for c in family for s in np.unique(severity[names == c])
              for g in [(names == c) & (severity == s)]]
    return 100 * float(np.mean(errors))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores_dir")
    parser.add_argument("features")
    parser.add_argument("--embeddings", help="a backbone's embeddings of the rows (.npy, keys beside it)")
    parser.add_argument("--backbone", default="efficientnet_lite:lite0")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args(argv)
    inputs = args.inputs or (["features", "both"] if args.embeddings else ["features"])
    ev = load_eval_data(args.scores_dir, args.features, SCORERS, args.embeddings,
                        args.backbone if args.embeddings else None)
    s = ev.scores
    names = np.asarray(s.corruptions)[s.corruption]
    m = s.m[TEST].astype(np.float64)
    rows = []
    for kind in inputs:
        for family, members in FAMILIES.items():
            t0 = time.process_time()
            inside = np.isin(names, members)
            q = cross_fitted(ev, TRAIN, ~inside, TrainSettings(), args.folds, kind)
            set_learned(ev, q)
            summary = family_prior(ev, TEST, members, args.boot, 0).set_index(["method", "scorer", "q"])
            base = summary.loc[("reference", TEST, "m"), "mean_abs_error_pts"]
            rows.append({"inputs": kind, "held-out family": family,
                         "Q-prior": summary.loc[("q_prior", *LEARNED), "mean_abs_error_pts"],
                         "Q-line": summary.loc[("q_line", *LEARNED), "mean_abs_error_pts"],
                         "ATC on learned_q": atc_error(q, m, names, s.severity, members),
                         "no shift": base, "goal (half)": base / 2,
                         "groups": int(summary.loc[("reference", TEST, "m"), "n_groups"]),
                         "CPU-s": round(time.process_time() - t0)})
    print(f"Test model {TEST}, learned_q trained on {' + '.join(TRAIN)} without the family, cross-fitted by "
          f"image ({args.folds} folds); mean absolute error in accuracy points over the family's groups\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
