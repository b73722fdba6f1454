"""Validate the audit's prediction interval and its in-reference check (docs/mini-reproduction/prior.md).

Two checks of ``predicted_accuracy.prediction_interval`` / ``in_reference``
(:mod:`iqa_lib.audit.interval`) for a task model's reference (default: the shipped
EfficientNet-Lite0 one):

1. nested leave-one-corruption-out: each ImageNet-C corruption of the reference is left
   out in turn; the ATC fit, the conformal interval and the in-reference threshold are
   made from clean and the other 14 corruptions only (the interval's own residuals by a
   leave-one-out inside those 14), then each severity group of the held-out corruption is
   predicted at n = 500 (the whole group) and n = 100 (``--draws`` random subsets);
2. held-out shifts (``--extras``): a score file of the same model on other shifted sets
   (columns corruption, severity, q_p, q_h, correct; e.g. ImageNet-C's four extra
   corruptions), each (corruption, severity) group a set, predicted from the whole
   reference, at its own size and at n = 100.

Per set: covered (the set's measured accuracy inside the interval), width, in_reference.
Coverage is over the sets the interval was given for (in reference) and over all sets
(an out-of-reference set counts as not covered there).

    python benchmarks/validate_prediction_interval.py [--extras SCORES.parquet]
        [--reference REF.parquet] [--method atc_ne] [--draws 20] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.analysis.prior import own_contributions
from iqa_lib.audit.accuracy import loco_validation, reference_outputs
from iqa_lib.audit.interval import (
    PI_LEVEL,
    distance_threshold,
    nearest,
    prediction_interval,
    reference_groups,
    shift_fit,
)
from iqa_lib.audit.reference import CLEAN, read_reference, shipped_reference_files

SIZES = (500, 100)


def _reference_dict(frame: pd.DataFrame) -> dict:
    return {"q_p": frame["q_p"].to_numpy(np.float64), "q_h": frame["q_h"].to_numpy(np.float64),
            "correct": frame["correct"].to_numpy(np.float64)}


def evaluate_sets(fit_data: pd.DataFrame, sets: pd.DataFrame, method: str, sizes=SIZES, draws: int = 20,
                  seed: int = 0, level: float = PI_LEVEL, thresholds: dict | None = None) -> pd.DataFrame:
    """Fit on ``fit_data`` (a reference frame); predict every (corruption, severity) group of
    ``sets`` at each size (whole when the size is at least the group's, else ``draws`` subsets)."""
    table = loco_validation(fit_data, [method])
    fit = shift_fit(table, method, level)
    groups = reference_groups(fit_data, ["q_p", "-q_h"])
    thresholds = dict(thresholds or {})
    contrib = own_contributions(_reference_dict(fit_data), {"q_p": sets["q_p"].to_numpy(np.float64),
                                                            "q_h": sets["q_h"].to_numpy(np.float64)})[method]
    std = np.stack([sets["q_p"].to_numpy(np.float64), -sets["q_h"].to_numpy(np.float64)]) / groups.scale[:, None]
    correct = sets["correct"].to_numpy(np.float64)
    rng = np.random.default_rng(seed)
    rows = []
    for (c, s), idx in sets.groupby(["corruption", "severity"], sort=True).indices.items():
        for size in sizes:
            whole = size >= len(idx)
            picks = [idx] if whole else [rng.choice(idx, size, replace=False) for _ in range(draws)]
            n = len(picks[0])
            if n not in thresholds:
                thresholds[n] = distance_threshold(groups, n, level)[0]
            for r, pick in enumerate(picks):
                pred = float(contrib[pick].mean())
                actual = float(correct[pick].mean())
                lo, hi = prediction_interval(fit, pred, n)
                dist, near = nearest(groups, std[:, pick])
                rows.append({"corruption": c, "severity": int(s), "size": size, "n": n, "draw": r,
                             "predicted": pred, "actual": actual, "lo": lo, "hi": hi,
                             "covered": lo <= actual <= hi, "width": hi - lo,
                             "distance": dist, "threshold": thresholds[n],
                             "in_reference": dist <= thresholds[n], "nearest": f"{near[0]} {near[1]}",
                             "half_shift": fit.quantile})
    return pd.DataFrame(rows)


def nested_loco(data: pd.DataFrame, method: str, draws: int = 20, seed: int = 0,
                level: float = PI_LEVEL) -> pd.DataFrame:
    """Each corruption left out: fit everything on the rest, evaluate its severity groups."""
    out = []
    for c in [c for c in pd.unique(data["corruption"]) if c != CLEAN]:
        rest = data[data["corruption"] != c]
        out.append(evaluate_sets(rest, data[data["corruption"] == c], method, SIZES, draws, seed, level))
    return pd.concat(out, ignore_index=True)


def summary(t: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Coverage, width and in-reference calls per ``by``."""
    def agg(g: pd.DataFrame) -> pd.Series:
        inside = g[g["in_reference"]]
        return pd.Series({
            "sets": len(g),
            "coverage": g["covered"].mean(),
            "mean width": g["width"].mean(),
            "in reference": int(g["in_reference"].sum()),
            "coverage in ref.": inside["covered"].mean() if len(inside) else np.nan,
            "covered or flagged": (g["covered"] | ~g["in_reference"]).mean(),
            "not covered, in ref.": int((~g["covered"] & g["in_reference"]).sum()),
            "mean abs. error (pts)": 100 * (g["predicted"] - g["actual"]).abs().mean(),
        })
    return t.groupby(by, sort=False).apply(agg, include_groups=False).reset_index()


COUNTS = {"sets", "in reference", "not covered, in ref.", "n", "severity", "draw", "flagged", "covered"}


def fmt(df: pd.DataFrame) -> str:
    """A markdown table: counts as integers, errors in points to 0.1, the rest to 0.001."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype.kind in "iu" or (col in COUNTS and df[col].dtype.kind == "f"):
            df[col] = df[col].map(lambda x: "-" if pd.isna(x) else f"{int(x)}")
        elif df[col].dtype.kind == "f":
            digits = 1 if "pts" in str(col) else 3
            df[col] = df[col].map(lambda x, d=digits: "-" if pd.isna(x) else f"{x:.{d}f}")
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extras", type=Path, help="score file of held-out shifted sets")
    ap.add_argument("--reference", type=Path, help="reference parquet (default: shipped Lite0)")
    ap.add_argument("--method", default="atc_ne", choices=["atc_ne", "atc_mc", "doc", "ac"])
    ap.add_argument("--draws", type=int, default=20, help="random subsets per group at n = 100")
    ap.add_argument("--csv", type=Path, help="write the per-set table here")
    args = ap.parse_args(argv)
    path = args.reference or next(p for p in shipped_reference_files()
                                  if p.name == "efficientnet_lite-lite0.parquet")
    data = reference_outputs(read_reference(path))
    t0 = time.perf_counter()
    loco = nested_loco(data, args.method, args.draws)
    print(f"# {args.method}, reference {path.name} ({len(data)} images), level {PI_LEVEL:.0%}\n")
    print(f"## Nested leave-one-corruption-out ({time.perf_counter() - t0:.1f} s)\n")
    print(fmt(summary(loco, ["size"])))
    print("\nPer held-out corruption:\n")
    print(fmt(summary(loco, ["size", "corruption"])))
    miss = loco[~loco["covered"]]
    if len(miss):
        print("\nNot covered:\n")
        cols = ["corruption", "severity", "n", "draw", "predicted", "actual", "lo", "hi", "in_reference"]
        print(fmt(miss[cols].groupby(["corruption", "severity", "n"]).agg(
            sets=("draw", "size"), flagged=("in_reference", lambda x: int((~x).sum()))).reset_index()))
    flagged = loco[~loco["in_reference"]]
    if len(flagged):
        print("\nOut of reference (held-out sets called outside):\n")
        print(fmt(flagged.groupby(["corruption", "severity", "n"]).agg(
            sets=("draw", "size"), covered=("covered", "sum"),
            distance=("distance", "mean"), threshold=("threshold", "mean")).reset_index()))
    frames = {"loco": loco}
    if args.extras:
        t0 = time.perf_counter()
        sets = pd.read_parquet(args.extras, columns=["corruption", "severity", "q_p", "q_h", "correct"])
        sets = sets[sets["corruption"] != CLEAN].dropna()
        sets["correct"] = sets["correct"].astype(np.float64)
        ex = evaluate_sets(data, sets, args.method, SIZES, args.draws)
        print(f"\n## Held-out shifts: {args.extras.name} ({time.perf_counter() - t0:.1f} s)\n")
        print(fmt(summary(ex, ["size"])))
        print("\nPer corruption:\n")
        print(fmt(summary(ex, ["size", "corruption"])))
        whole = ex[ex["size"] == 500]
        print("\nPer set (whole group):\n")
        cols = ["corruption", "severity", "n", "predicted", "actual", "lo", "hi", "covered",
                "distance", "threshold", "in_reference", "nearest"]
        print(fmt(whole[cols]))
        frames["extras"] = ex
    if args.csv:
        pd.concat([f.assign(check=k) for k, f in frames.items()]).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
