"""How often a task model is right: top-1 per group, ImageNet-C CE/mCE, calibration of q_p.

Every analysis of the kit rests on the correctness M of a task model; these tables say
what that M looks like before anything is correlated with it, and give the numbers every
robustness paper quotes, so a reader can place the model:

- ``accuracy``: top-1 accuracy and error with n, on clean images and per (corruption,
  severity);
- ``ce``: per corruption, the unnormalised CE (mean error over the severities present) and,
  for the 15 ImageNet-C corruptions with all five severities, CE and relative CE normalised
  by AlexNet (Hendrycks & Dietterich, ICLR 2019; numbers and sources in
  ``iqa_lib/resources/imagenet_c``);
- ``calibration``: ECE of q_p (15 equal-width bins (0, 1/15], ..., (14/15, 1], weighted by
  bin count) on clean images, on all corrupted images pooled and per severity;
- ``reliability``: the reliability table behind the diagrams (bin, n, mean confidence,
  accuracy) for clean and corrupted images;
- ``severity``: accuracy against severity per corruption, with the clean accuracy as
  severity 0 of every curve.

Pure pandas/numpy: the command and the notebook write and draw these frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lib.analysis.distribution import corruption_rank
from iqa_lib.analysis.io import CLEAN, list_score_files, load_scores
from iqa_lib.corruptions import COMMON_CORRUPTIONS, SEVERITIES

N_BINS = 15
CORRUPTED = "corrupted"
ALEXNET_RESOURCE = "alexnet_errors.csv"
CLEAN_ERROR_CAVEAT = (
    "AlexNet's clean error 0.43478 is torchvision's published top-1 (56.522%), "
    "not a number from the ImageNet-C authors"
)


@dataclass(frozen=True)
class AlexNetErrors:
    """AlexNet's top-1 errors on ImageNet-C: ``per_severity`` has corruption, severity,
    error; ``clean`` is its clean error (None: relative CE cannot be computed)."""

    per_severity: pd.DataFrame
    clean: float | None
    clean_note: str = ""  # a caveat on the clean error's source, repeated beside relative CE

    def sums(self) -> pd.Series:
        """Sum over severities 1-5 per corruption (the CE denominator)."""
        return self.per_severity.groupby("corruption")["error"].sum()


def load_alexnet_errors() -> AlexNetErrors:
    """The published AlexNet errors shipped in ``iqa_lib/resources/imagenet_c``."""
    with files("iqa_lib.resources.imagenet_c").joinpath(ALEXNET_RESOURCE).open() as fh:
        table = pd.read_csv(fh)
    clean = table.loc[table["corruption"] == CLEAN, "error"]
    per = table[table["corruption"] != CLEAN][["corruption", "severity", "error"]]
    value = float(clean.iloc[0]) if len(clean) else None
    return AlexNetErrors(per.reset_index(drop=True), value, CLEAN_ERROR_CAVEAT if value is not None else "")


def alexnet_from_table(per_severity: pd.DataFrame, clean: float | None) -> AlexNetErrors:
    """AlexNet errors given as a table (corruption, severity, error), e.g. made-up ones in a test."""
    missing = {"corruption", "severity", "error"} - set(per_severity.columns)
    if missing:
        raise ValueError(f"AlexNet error table lacks column(s) {sorted(missing)}")
    return AlexNetErrors(per_severity[["corruption", "severity", "error"]].reset_index(drop=True), clean)


# --------------------------------------------------------------------------- input
def load_task_frame(scores_dir: str | Path, model: str) -> pd.DataFrame:
    """corruption, severity, correct (0/1), q_p of one task model's score file.

    A file without ``correct`` (unlabelled images, or the model's own classes without a
    class map) has no correctness to describe: that is an error naming the file.
    """
    path = list_score_files(scores_dir, [model])[0]
    scores = load_scores(path.parent, [model])
    kind = scores.kinds[model]
    if kind == "nr_iqa":
        raise ValueError(
            f"{path}: a no-reference IQA score file (column 'q'); correctness needs a task "
            "model's file (columns correct, q_p, q_h, q_l)"
        )
    if model not in scores.m:
        raise ValueError(
            f"{path}: no column 'correct', so there is no correctness to describe (unlabelled "
            "images, or a model with its own classes and no class map); score labelled images"
        )
    return pd.DataFrame(
        {
            "corruption": np.asarray(scores.corruptions, dtype=object)[scores.corruption].astype(str),
            "severity": scores.severity.astype(np.int64),
            "correct": scores.m[model].astype(np.int64),
            "q_p": scores.q[(model, "q_p")].astype(np.float64),
        }
    )


def _check_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in ("corruption", "severity", "correct") if c not in frame.columns]
    if missing:
        raise ValueError(f"task frame lacks column(s) {missing} (corruption, severity, correct, q_p)")


# --------------------------------------------------------------------------- accuracy
def _order(table: pd.DataFrame) -> pd.DataFrame:
    """Clean first, ImageNet-C order, then other corruptions A-Z; severity ascending."""
    rank = table["corruption"].map(corruption_rank)
    return (
        table.assign(_r=rank).sort_values(["_r", "severity"], kind="stable").drop(columns="_r")
        .reset_index(drop=True)
    )


def accuracy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """corruption, severity, n, n_correct, accuracy, error: one row per group present."""
    _check_frame(frame)
    g = frame.groupby(["corruption", "severity"], observed=True)["correct"]
    table = pd.DataFrame({"n": g.size(), "n_correct": g.sum()}).reset_index()
    table["n_correct"] = table["n_correct"].astype(np.int64)
    table["accuracy"] = table["n_correct"] / table["n"]
    table["error"] = 1.0 - table["accuracy"]
    return _order(table)[["corruption", "severity", "n", "n_correct", "accuracy", "error"]]


def clean_row(accuracy: pd.DataFrame) -> pd.Series | None:
    rows = accuracy[accuracy["corruption"] == CLEAN]
    return rows.iloc[0] if len(rows) else None


def severity_curves(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against severity per corruption: corruption, severity, n, accuracy.

    The clean accuracy is repeated as severity 0 of every corruption, so each curve starts
    where the model stands without corruption.
    """
    clean = clean_row(accuracy)
    rows = []
    for corruption, g in accuracy[accuracy["corruption"] != CLEAN].groupby("corruption", sort=False):
        if clean is not None:
            rows.append({"corruption": corruption, "severity": 0, "n": int(clean["n"]),
                         "accuracy": float(clean["accuracy"])})
        rows += [{"corruption": corruption, "severity": int(r.severity), "n": int(r.n),
                  "accuracy": float(r.accuracy)} for r in g.itertuples()]
    out = pd.DataFrame(rows, columns=["corruption", "severity", "n", "accuracy"])
    return _order(out) if len(out) else out


# --------------------------------------------------------------------------- CE / mCE
CE_COLUMNS = (
    "corruption", "n_severities", "n", "error_mean", "error_sum", "alexnet_error_sum", "ce",
    "relative_ce", "note",
)


def _why_unnormalised(corruption: str, sevs: frozenset, alex_sum: pd.Series, alex_sev: pd.Series) -> str | None:
    """Why a corruption's CE cannot be normalised by AlexNet's, or None when it can."""
    if corruption not in COMMON_CORRUPTIONS:
        return "not one of the 15 ImageNet-C corruptions: unnormalised only"
    if corruption not in alex_sum.index or alex_sev.get(corruption) != frozenset(SEVERITIES):
        return "no AlexNet errors for all 5 severities: unnormalised only"
    if sevs != frozenset(SEVERITIES):
        return f"severities {sorted(sevs)} only, CE needs 1-5: unnormalised only"
    return None


def _normalised(err_sum: float, a_sum: float, e_clean: float | None, alexnet: AlexNetErrors) -> dict:
    """CE against AlexNet's error sum and, with both clean errors, relative CE; the note says which."""
    out = {"alexnet_error_sum": a_sum, "ce": err_sum / a_sum}
    if e_clean is None:
        out["note"] = "no clean images: relative CE not computed"
    elif alexnet.clean is None:
        out["note"] = "no published AlexNet clean error: relative CE not computed"
    else:
        denom = a_sum - len(SEVERITIES) * alexnet.clean
        out["relative_ce"] = (err_sum - len(SEVERITIES) * e_clean) / denom
        out["note"] = alexnet.clean_note
    return out


def corruption_errors(accuracy: pd.DataFrame, alexnet: AlexNetErrors | None = None) -> pd.DataFrame:
    """One row per corruption present: unnormalised CE (``error_mean``) and, where the
    model has all five severities of one of the 15 ImageNet-C corruptions, ``ce`` and
    ``relative_ce`` against AlexNet. ``note`` says why a value is missing."""
    alexnet = alexnet if alexnet is not None else load_alexnet_errors()
    alex_sum = alexnet.sums()
    alex_sev = alexnet.per_severity.groupby("corruption")["severity"].apply(frozenset)
    clean = clean_row(accuracy)
    e_clean = None if clean is None else float(clean["error"])
    rows = []
    corrupted = accuracy[(accuracy["corruption"] != CLEAN) & (accuracy["severity"] > 0)]
    for corruption, g in corrupted.groupby("corruption", sort=False):
        sevs = frozenset(int(s) for s in g["severity"])
        err_sum = float(g["error"].sum())
        row = {
            "corruption": corruption, "n_severities": len(sevs), "n": int(g["n"].sum()),
            "error_mean": float(g["error"].mean()), "error_sum": err_sum,
            "alexnet_error_sum": math.nan, "ce": math.nan, "relative_ce": math.nan, "note": "",
        }
        why = _why_unnormalised(corruption, sevs, alex_sum, alex_sev)
        if why:
            row["note"] = why
        else:
            row.update(_normalised(err_sum, float(alex_sum[corruption]), e_clean, alexnet))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(CE_COLUMNS))


def mean_ce(ce: pd.DataFrame) -> dict[str, float | int]:
    """mCE, relative mCE and unnormalised mCE over the corruptions that have each value."""
    common = ce[ce["corruption"].isin(COMMON_CORRUPTIONS)]
    out: dict[str, float | int] = {}
    for key, col in (("mce", "ce"), ("relative_mce", "relative_ce"), ("mce_unnormalized", "error_mean")):
        vals = common[col].dropna()
        out[key] = float(vals.mean()) if len(vals) else math.nan
        out[f"{key}_n"] = int(len(vals))
    return out


# --------------------------------------------------------------------------- calibration
def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin of each confidence for right-closed bins (0, 1/n], (1/n, 2/n], ...; 0 -> bin 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges, np.asarray(confidence, dtype=np.float64), side="left") - 1
    return np.clip(idx, 0, n_bins - 1)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """bin, lower, upper, n, confidence (mean), accuracy per bin (empty bins: n 0, NaN)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    idx = bin_index(conf, n_bins)
    n = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / n
        acc = np.bincount(idx, weights=hit, minlength=n_bins) / n
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:],
                         "n": n.astype(np.int64), "confidence": mean_conf, "accuracy": acc})


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE = sum_b n_b / N * |accuracy_b - confidence_b| (NaN without rows)."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = int(bins["n"].sum())
    if total == 0:
        return math.nan
    used = bins[bins["n"] > 0]
    return float((used["n"] / total * (used["accuracy"] - used["confidence"]).abs()).sum())


def _subsets(frame: pd.DataFrame) -> list[tuple[str, int, np.ndarray]]:
    """(subset, severity, mask): clean (0), corrupted pooled (-1), then each severity."""
    clean = (frame["corruption"] == CLEAN).to_numpy()
    out = [(CLEAN, 0, clean), (CORRUPTED, -1, ~clean)]
    sev = frame["severity"].to_numpy()
    for s in sorted(set(sev[~clean].tolist())):
        out.append(("severity", int(s), ~clean & (sev == s)))
    return out


def calibration_table(frame: pd.DataFrame, n_bins: int = N_BINS) -> pd.DataFrame:
    """subset (clean / corrupted / severity), severity (0, -1 pooled, 1-5), n, accuracy,
    confidence (mean q_p), ece. Subsets without rows are left out."""
    _check_frame(frame)
    if "q_p" not in frame.columns:
        raise ValueError("task frame lacks column 'q_p' (max softmax), needed for calibration")
    rows = []
    for subset, sev, mask in _subsets(frame):
        if not mask.any():
            continue
        conf = frame["q_p"].to_numpy(np.float64)[mask]
        hit = frame["correct"].to_numpy(np.float64)[mask]
        rows.append({"subset": subset, "severity": sev, "n": int(mask.sum()),
                     "accuracy": float(hit.mean()), "confidence": float(conf.mean()),
                     "ece": expected_calibration_error(conf, hit, n_bins)})
    return pd.DataFrame(rows, columns=["subset", "severity", "n", "accuracy", "confidence", "ece"])


def reliability_table(frame: pd.DataFrame, n_bins: int = N_BINS) -> pd.DataFrame:
    """The reliability diagram's data for clean and pooled corrupted images: subset, bin,
    lower, upper, n, confidence, accuracy."""
    frames = []
    for subset, _, mask in _subsets(frame)[:2]:
        if mask.any():
            bins = reliability_bins(frame["q_p"].to_numpy()[mask], frame["correct"].to_numpy()[mask], n_bins)
            frames.append(bins.assign(subset=subset))
    cols = ["subset", "bin", "lower", "upper", "n", "confidence", "accuracy"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------- all together
@dataclass
class Correctness:
    """Every correctness table of one task model, and the summary that ``summary.json`` holds."""

    model: str
    accuracy: pd.DataFrame
    ce: pd.DataFrame
    calibration: pd.DataFrame
    reliability: pd.DataFrame
    severity: pd.DataFrame
    summary: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ece(self, subset: str) -> float:
        rows = self.calibration[self.calibration["subset"] == subset]
        return float(rows["ece"].iloc[0]) if len(rows) else math.nan


def _metric(value: float, n: int) -> dict[str, float | int | None]:
    return {"value": None if value is None or not np.isfinite(value) else float(value), "n": int(n)}


def summarize(accuracy: pd.DataFrame, ce: pd.DataFrame, calibration: pd.DataFrame) -> dict:
    """Six headline numbers, each ``{"value", "n"}``: the same keys for every model, so
    ``dvc metrics show`` prints one row per model. n counts images, or corruptions for mCE."""
    clean = clean_row(accuracy)
    corrupted = accuracy[accuracy["corruption"] != CLEAN]
    cal = calibration.set_index("subset")
    means = mean_ce(ce)

    def cal_metric(subset: str) -> dict:
        if subset not in cal.index:
            return _metric(math.nan, 0)
        return _metric(cal.loc[subset, "ece"], cal.loc[subset, "n"])

    return {
        "clean_top1": _metric(math.nan if clean is None else clean["accuracy"], 0 if clean is None else clean["n"]),
        # mean over (corruption, severity) groups, as ImageNet-C papers report it
        "corrupted_top1": _metric(corrupted["accuracy"].mean() if len(corrupted) else math.nan,
                                  corrupted["n"].sum()),
        "mce": _metric(means["mce"], means["mce_n"]),
        "relative_mce": _metric(means["relative_mce"], means["relative_mce_n"]),
        "ece_clean": cal_metric(CLEAN),
        "ece_corrupted": cal_metric(CORRUPTED),
    }


def correctness_from_frame(
    frame: pd.DataFrame, model: str, alexnet: AlexNetErrors | None = None, n_bins: int = N_BINS
) -> Correctness:
    """All tables from a frame with corruption, severity, correct, q_p (see module doc)."""
    alexnet = alexnet if alexnet is not None else load_alexnet_errors()
    accuracy = accuracy_table(frame)
    ce = corruption_errors(accuracy, alexnet)
    calibration = calibration_table(frame, n_bins)
    result = Correctness(model, accuracy, ce, calibration, reliability_table(frame, n_bins),
                         severity_curves(accuracy))
    result.summary = summarize(accuracy, ce, calibration)
    means = mean_ce(ce)
    common = ce[ce["corruption"].isin(COMMON_CORRUPTIONS)]
    if clean_row(accuracy) is None:
        result.notes.append("no clean images: clean top-1, relative CE and clean ECE are missing")
    if len(common) and means["mce_n"] < len(COMMON_CORRUPTIONS):
        result.notes.append(
            f"mCE over {means['mce_n']} of the 15 ImageNet-C corruptions (the others lack "
            "severities or are absent): not comparable with published mCE"
        )
    if means["relative_mce_n"] and alexnet.clean_note:
        result.notes.append(alexnet.clean_note)
    return result


def compute_correctness(
    scores_dir: str | Path, model: str, alexnet: AlexNetErrors | None = None, n_bins: int = N_BINS
) -> Correctness:
    """Read ``<scores_dir>/<model>.parquet`` and compute every correctness table."""
    return correctness_from_frame(load_task_frame(scores_dir, model), model, alexnet, n_bins)
