"""Why the Q-line on a confidence is fitted on probit axes (docs/mini-reproduction/prior.md).

The Q-line (``iqa_lib.analysis.prior.estimators.fit_q_line``) reads each reference group's
accuracy against its mean Q. Accuracy bends against mean confidence near the top: a straight
line, fitted mostly on corrupted groups, over-predicts the clean group itself, and leaving one
corruption out never holds clean out, so that validation cannot show it. Printed per task
model, for the straight line and for the kit's line on probit axes (probit of accuracy on
probit of mean q_p, the scaling of "accuracy on the line", Miller et al. 2021): the clean
group's accuracy and mean q_p; the error on clean of the line fitted on every group
(in-sample) and fitted without clean (clean held out); and the mean leave-one-corruption-out
error over the other groups.

    python benchmarks/q_line_clean_bias.py SCORES.parquet [SCORES.parquet ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.analysis.prior.estimators import fit_q_line


def group_table(path: str) -> pd.DataFrame:
    """Mean q_p and accuracy of each (corruption, severity) group of a task model's score file."""
    d = pd.read_parquet(path, columns=["corruption", "severity", "q_p", "correct"])
    d["corruption"] = d["corruption"].astype(str)
    return d.groupby(["corruption", "severity"])[["q_p", "correct"]].mean().reset_index()


def predict(g: pd.DataFrame, fit: np.ndarray, target: np.ndarray, scale: str) -> np.ndarray:
    """The kit's Q-line on ``scale`` fitted on groups ``fit``, read at the mean q_p of groups
    ``target`` (one row per group already)."""
    x, y = g["q_p"].to_numpy(), g["correct"].to_numpy()
    return fit_q_line(x[fit], y[fit], np.arange(fit.sum()), scale=scale).predict(x[target])


def report(path: str) -> dict:
    g = group_table(path)
    y = g["correct"].to_numpy()
    clean = (g["corruption"] == "clean").to_numpy()
    if clean.sum() != 1:
        raise SystemExit(f"{path}: needs exactly one clean group")
    out = {"scores": Path(path).name, "clean accuracy": y[clean][0], "clean mean q_p": g["q_p"][clean].iloc[0]}
    everything = np.ones(len(g), dtype=bool)
    for scale, name in (("linear", "straight"), ("probit", "probit")):
        out[f"{name}: clean, in-sample (pts)"] = 100 * (predict(g, everything, clean, scale)[0] - y[clean][0])
        out[f"{name}: clean held out (pts)"] = 100 * (predict(g, ~clean, clean, scale)[0] - y[clean][0])
        errs = [np.abs(predict(g, ~held, held, scale) - y[held]).mean()
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
