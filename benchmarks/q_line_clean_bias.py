"""The Q-line on a model's own confidence misses the clean group (docs/mini-reproduction/prior.md).

The Q-line (``iqa_lib.analysis.prior.estimators.fit_q_line``) is a straight line of each
reference group's accuracy on its mean q_p. Leaving one corruption out, it matches ATC; but
accuracy bends against mean confidence near the top, and the line, fitted mostly on corrupted
groups, over-predicts the clean group itself. Leaving one corruption out never holds clean
out, so that validation cannot show it. Printed per task model: the clean group's accuracy and
mean q_p; the error on clean of the line fitted on every group (in-sample) and fitted
without clean (clean held out); and the mean leave-one-corruption-out error over the other
groups, for the straight line and for the same line on probit-scaled axes (probit of
accuracy on probit of mean q_p, the scaling of "accuracy on the line", Miller et al. 2021).

    python benchmarks/q_line_clean_bias.py SCORES.parquet [SCORES.parquet ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from iqa_lib.analysis.prior.estimators import fit_q_line
from iqa_lib.analysis.prior.logit_estimators import probit


def group_table(path: str) -> pd.DataFrame:
    """Mean q_p and accuracy of each (corruption, severity) group of a task model's score file."""
    d = pd.read_parquet(path, columns=["corruption", "severity", "q_p", "correct"])
    d["corruption"] = d["corruption"].astype(str)
    return d.groupby(["corruption", "severity"])[["q_p", "correct"]].mean().reset_index()


def predict(g: pd.DataFrame, fit: np.ndarray, target: np.ndarray, scaled: bool) -> np.ndarray:
    """The line fitted on groups ``fit`` read at the mean q_p of groups ``target``: straight
    (the kit's ``fit_q_line`` over the groups, one row each) or on probit-scaled axes."""
    x, y = g["q_p"].to_numpy(), g["correct"].to_numpy()
    if not scaled:
        line = fit_q_line(x[fit], y[fit], np.arange(fit.sum()))  # one row per group already
        return line.predict(x[target])
    slope, intercept = np.polyfit(probit(x[fit]), probit(y[fit]), 1)
    return norm.cdf(intercept + slope * probit(x[target]))


def report(path: str) -> dict:
    g = group_table(path)
    y = g["correct"].to_numpy()
    clean = (g["corruption"] == "clean").to_numpy()
    if clean.sum() != 1:
        raise SystemExit(f"{path}: needs exactly one clean group")
    out = {"scores": Path(path).name, "clean accuracy": y[clean][0], "clean mean q_p": g["q_p"][clean].iloc[0]}
    everything = np.ones(len(g), dtype=bool)
    for scaled, name in ((False, "straight"), (True, "probit")):
        out[f"{name}: clean, in-sample (pts)"] = 100 * (predict(g, everything, clean, scaled)[0] - y[clean][0])
        out[f"{name}: clean held out (pts)"] = 100 * (predict(g, ~clean, clean, scaled)[0] - y[clean][0])
        errs = [np.abs(predict(g, ~held, held, scaled) - y[held]).mean()
                for c in g["corruption"].unique() if c != "clean"
                for held in [(g["corruption"] == c).to_numpy()]]
        out[f"{name}: LOCO mean abs. (pts)"] = 100 * float(np.mean(errs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", nargs="+", help="task-model score files on clean images and ImageNet-C")
    args = ap.parse_args()
    table = pd.DataFrame([report(p) for p in args.scores]).set_index("scores")
    print(table.round(3).T.to_markdown())


if __name__ == "__main__":
    main()
