"""Validate the audit's prediction interval and its in-reference check (docs/mini-reproduction/prior.md).

Two checks of ``predicted_accuracy.prediction_interval`` / ``in_reference``
(:mod:`iqa_lib.audit.interval`) for a task model's reference (default: the shipped
EfficientNet-Lite0 one):

1. nested leave-one-corruption-out: each ImageNet-C corruption of the reference is left
   out in turn; the ATC fit, the conformal interval and the in-reference threshold are
   made from clean and the other 14 corruptions only (the interval's own residuals by a
   leave-one-out inside those 14), then each severity group of the held-out corruption is
   predicted at n = 500 (the whole group) and n = 100 (``--draws`` random subsets);
2. held-out shifts (``--extras``): score files of the same model on other shifted sets
   (columns corruption, severity, label, q_p, q_h, correct; e.g. ImageNet-C's four extra
   corruptions, ``benchmarks/curator_shifts.py``'s realistic shifts), each (corruption,
   severity) group a set, predicted from the whole reference, at its own size and at n = 100;
3. classes outside the reference (``--class-split LABELS.parquet``: a score file aligned row
   by row with the reference, e.g. the ``results/scores/<model>.parquet`` it was built from,
   for the labels): the reference's classes are split in two halves (alternate classes in
   sorted order); checks 1 and 2 are repeated with everything fitted on the images of one
   half and every set drawn from the images of the other.

Per set: covered (the set's measured accuracy inside the interval), width, in_reference.
Coverage is over the sets the interval was given for (in reference) and over all sets
(an out-of-reference set counts as not covered there).

    python benchmarks/validate_prediction_interval.py [--extras SCORES.parquet ...]
        [--class-split LABELS.parquet] [--reference REF.parquet] [--method atc_ne]
        [--draws 20] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.analysis.prior.estimators import clip_accuracy, fit_own
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
    """The fit's outputs, with each row's group (the Q-line's points)."""
    return {"q_p": frame["q_p"].to_numpy(np.float64), "q_h": frame["q_h"].to_numpy(np.float64),
            "correct": frame["correct"].to_numpy(np.float64),
            "group": frame.groupby(["corruption", "severity"], observed=True).ngroup().to_numpy(np.int64)}


def evaluate_sets(fit_data: pd.DataFrame, sets: pd.DataFrame, method: str, sizes=SIZES, draws: int = 20,
                  seed: int = 0, level: float = PI_LEVEL, thresholds: dict | None = None) -> pd.DataFrame:
    """Fit on ``fit_data`` (a reference frame); predict every (corruption, severity) group of
    ``sets`` at each size (whole when the size is at least the group's, else ``draws`` subsets)."""
    table = loco_validation(fit_data, [method])
    fit = shift_fit(table, method, level)
    groups = reference_groups(fit_data, ["q_p", "-q_h"])
    thresholds = dict(thresholds or {})
    own = fit_own(_reference_dict(fit_data))
    q_p, q_h = sets["q_p"].to_numpy(np.float64), sets["q_h"].to_numpy(np.float64)
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
                contrib = own.contributions({"q_p": q_p[pick], "q_h": q_h[pick]})[method]  # each set its own
                pred = float(clip_accuracy(contrib.mean()))
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
                level: float = PI_LEVEL, held: np.ndarray | None = None) -> pd.DataFrame:
    """Each corruption left out: fit everything on the rest, evaluate its severity groups.

    ``held`` (a boolean per row): the fit uses only rows outside it, the sets only rows in
    it (classes the fit never saw).
    """
    fit_rows = np.ones(len(data), bool) if held is None else ~held
    set_rows = np.ones(len(data), bool) if held is None else held
    out = []
    for c in [c for c in pd.unique(data["corruption"]) if c != CLEAN]:
        left_out = (data["corruption"] == c).to_numpy()
        out.append(evaluate_sets(data[fit_rows & ~left_out], data[set_rows & left_out], method, SIZES,
                                 draws, seed, level))
    return pd.concat(out, ignore_index=True)


def class_halves(reference: pd.DataFrame, labels_file: Path) -> tuple[np.ndarray, set]:
    """Rows of the reference whose class is in the held-out half, and that half's labels.

    The labels come from a score file aligned row by row with the reference (checked: same
    corruption, severity and q_p on every row); classes alternate between halves in sorted
    order, so both halves span the label range.
    """
    lab = pd.read_parquet(labels_file, columns=["corruption", "severity", "label", "q_p"])
    aligned = (len(lab) == len(reference)
               and (lab["corruption"].to_numpy() == reference["corruption"].to_numpy()).all()
               and (lab["severity"].to_numpy() == reference["severity"].to_numpy()).all()
               and np.allclose(lab["q_p"].to_numpy(np.float64), reference["q_p"].to_numpy(np.float64),
                               rtol=0, atol=1e-6))
    if not aligned:
        raise SystemExit(f"{labels_file}: not aligned row by row with the reference (rows, corruption, "
                         "severity or q_p differ); pass the score file the reference was built from")
    classes = np.sort(lab["label"].unique())
    held = set(classes[1::2].tolist())
    return lab["label"].isin(held).to_numpy(), held


def _report_sets(ex: pd.DataFrame, title: str) -> None:
    print(f"\n## {title}\n")
    print(fmt(summary(ex, ["n"])))
    print("\nPer corruption:\n")
    print(fmt(summary(ex, ["n", "corruption"])))
    whole = ex[ex["size"] == 500]
    print("\nPer set (whole group):\n")
    cols = ["corruption", "severity", "n", "predicted", "actual", "lo", "hi", "covered",
            "distance", "threshold", "in_reference", "nearest"]
    print(fmt(whole[cols]))


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


def _read_sets(path: Path) -> pd.DataFrame:
    sets = pd.read_parquet(path, columns=["corruption", "severity", "label", "q_p", "q_h", "correct"])
    sets = sets[sets["corruption"] != CLEAN].dropna().reset_index(drop=True)
    sets["correct"] = sets["correct"].astype(np.float64)
    return sets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extras", type=Path, nargs="*", default=[], help="score files of held-out shifted sets")
    ap.add_argument("--class-split", type=Path,
                    help="score file aligned with the reference, for its labels: also validate on classes "
                         "outside the fit")
    ap.add_argument("--reference", type=Path, help="reference parquet (default: shipped Lite0)")
    ap.add_argument("--method", default="atc_ne", choices=["atc_ne", "atc_mc", "q_line", "doc", "ac"])
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
    print(fmt(summary(loco, ["n"])))
    print("\nPer held-out corruption:\n")
    print(fmt(summary(loco, ["n", "corruption"])))
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
    held_out = [_read_sets(path) for path in args.extras]
    for path, sets in zip(args.extras, held_out, strict=True):
        t0 = time.perf_counter()
        ex = evaluate_sets(data, sets, args.method, SIZES, args.draws)
        _report_sets(ex, f"Held-out shifts: {path.name} ({time.perf_counter() - t0:.1f} s)")
        frames[f"extras:{path.name}"] = ex
    if args.class_split:
        held, classes = class_halves(data, args.class_split)
        t0 = time.perf_counter()
        split = nested_loco(data, args.method, args.draws, held=held)
        print(f"\n## Classes outside the reference: fitted on {int((~held).sum())} rows of "
              f"the other classes, sets from the {len(classes)} classes held out ({time.perf_counter() - t0:.1f} s)\n")
        print("Nested leave-one-corruption-out, sets from the held-out classes only:\n")
        print(fmt(summary(split, ["n"])))
        frames["loco:classes"] = split
        fit_half = data[~held]
        for path, sets in zip(args.extras, held_out, strict=True):
            ex = evaluate_sets(fit_half, sets[sets["label"].isin(classes)], args.method, SIZES, args.draws)
            _report_sets(ex, f"Held-out shifts on held-out classes: {path.name}")
            frames[f"extras:classes:{path.name}"] = ex
    if args.csv:
        pd.concat([f.assign(check=k) for k, f in frames.items()]).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
