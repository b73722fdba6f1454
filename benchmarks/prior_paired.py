"""Paired differences between two accuracy estimators' validated errors (docs/mini-reproduction/prior.md).

Reads ``prior.csv`` written by ``iqa-kit prior`` (one row per estimator, task model and held-out
(corruption, severity) group) and, for each task model and pair of methods, prints the mean
difference of absolute errors in accuracy points (A minus B: negative = A is closer) with a 95%
percentile bootstrap interval that resamples the held-out corruptions (a corruption's five
severity groups share one fit and the same images, so the corruption is the independent unit),
and the number of corruptions and groups behind it. Not corrected for the several pairs shown.
With ``--pooled``, the same over each held-out corruption's severities pooled (the table's
``pooled`` rows: one set per corruption) instead of its severity groups.

    python benchmarks/prior_paired.py results/prior/prior.csv nuclear:atc_ne nuclear:atc_mc
    python benchmarks/prior_paired.py results/prior/prior.csv nuclear:atc_ne --pooled
    python benchmarks/prior_paired.py results/prior/prior.csv q_line/M/q_p:atc_mc q_line/lite0/q_p:q_prior/lite0/q_p
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def select(rows: pd.DataFrame, term: str, model: str) -> pd.DataFrame:
    """The rows of one estimator: ``method`` or ``method/scorer/q`` (``M`` as scorer: the task
    model itself), e.g. ``atc_mc``, ``q_line/M/q_p``, ``q_line/lite0/q_p``, ``q_prior/niqe/q``."""
    method, *rest = term.split("/")
    picked = rows[rows["method"] == method]
    if rest:
        picked = picked[picked["scorer"] == (model if rest[0] == "M" else rest[0])]
    if len(rest) > 1:
        picked = picked[picked["q"] == rest[1]]
    if picked.empty:
        raise SystemExit(f"no rows of {term!r} for task model {model!r}")
    if picked.groupby(["scorer", "q"]).ngroups > 1:
        raise SystemExit(f"{term!r} names several Q for task model {model!r}: write method/scorer/q")
    return picked


def paired(table: pd.DataFrame, model: str, a: str, b: str, n_boot: int, seed: int, pooled: bool = False) -> dict:
    """Mean over held-out corruptions of (|error A| - |error B|) per corruption, with its interval;
    over the severity groups, or with ``pooled`` over the pooled sets."""
    rows = table[table["task_model"] == model]
    if "pooled" in rows:
        rows = rows[rows["pooled"].astype(bool) == pooled]
    elif pooled:
        raise SystemExit("this prior.csv has no pooled rows (written before they were added): rerun iqa-kit prior")
    err = rows.assign(err=(rows["predicted"] - rows["actual"]).abs() * 100)

    def per_group(term: str) -> pd.Series:
        picked = select(err, term, model)
        return picked.groupby(["corruption", "severity"])["err"].mean()

    diff = (per_group(a) - per_group(b)).dropna()
    per_corruption = diff.groupby(level="corruption").mean().to_numpy()
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, per_corruption.size, size=(n_boot, per_corruption.size))
    lo, hi = np.percentile(per_corruption[draws].mean(axis=1), [2.5, 97.5])
    return {"task_model": model, "a": a, "b": b, "mean_diff_pts": per_corruption.mean(), "ci_low": lo,
            "ci_high": hi, "n_corruptions": per_corruption.size, "n_groups": diff.size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("prior_csv")
    p.add_argument("pairs", nargs="+", help="A:B estimators, each a method or method/scorer/q (M: the task "
                   "model), e.g. nuclear:atc_ne, q_line/M/q_p:atc_mc")
    p.add_argument("--n-bootstrap", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pooled", action="store_true", help="compare on each corruption's severities pooled")
    args = p.parse_args(argv)
    table = pd.read_csv(args.prior_csv)
    out = [paired(table, m, *pair.split(":"), args.n_bootstrap, args.seed, args.pooled)
           for m in sorted(table["task_model"].unique()) for pair in args.pairs]
    print(pd.DataFrame(out).round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
