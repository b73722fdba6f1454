"""What an audit says about a dataset: per scorer and Q variable, its distribution and where it sits.

For each Q variable: n, mean, sd and quantiles (numpy's linear interpolation,
the same as pandas' default), the Wasserstein-1 distance from the dataset's
values to the reference's clean ImageNet values and to each ImageNet-C severity
(corruptions pooled), and the closest of those groups. With a task model
(a score file with a ``correct`` column): its accuracy with a Wilson interval.
For a task model (``q_p``) whose reference keeps ``correct``: its predicted
accuracy on these images (ATC, with AC and DoC beside it; see
:mod:`iqa_lib.audit.accuracy`), with a bootstrap interval and the error band of
the estimator's leave-one-corruption-out validation on the reference.
The numbers go to ``summary.json``; the report draws them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from iqa_lib.audit.reference import Q_VARIABLES, Reference

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
# +1: a higher value means better quality (or a more confident model); -1: lower is better;
# 0: the metric has no quality direction (TV grows with noise and shrinks with blur).
DIRECTIONS: dict[tuple[str, str], int] = {
    ("tv", "q"): 0,
    ("brisque", "q"): -1,
    ("niqe", "q"): -1,
    ("piqe", "q"): -1,
}
CONFIDENCE_DIRECTIONS = {"q_p": 1, "q_h": -1, "q_l": 1}


def quality_direction(spec_text: str, variable: str) -> int:
    """Which way is better for a Q variable; 0 when the kit does not know."""
    if variable in CONFIDENCE_DIRECTIONS:
        return CONFIDENCE_DIRECTIONS[variable]
    family, _, name = spec_text.partition(":")
    if (family, variable) in DIRECTIONS:
        return DIRECTIONS[(family, variable)]
    if family == "pyiqa" and name:
        try:
            import pyiqa

            lower = pyiqa.DEFAULT_CONFIGS[name]["metric_opts"].get("lower_better")
            if lower is None:
                lower = pyiqa.DEFAULT_CONFIGS[name].get("lower_better", False)
            return -1 if lower else 1
        except (ImportError, KeyError, AttributeError):
            return 0
    return 0


def direction_words(direction: int) -> str:
    return {1: "higher is better", -1: "lower is better", 0: "no quality direction"}[direction]


def describe_values(values: Iterable[float]) -> dict[str, Any]:
    """n, mean, sd (n - 1) and :data:`QUANTILES` of the finite values."""
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"n": 0, "mean": None, "sd": None, "quantiles": {}}
    q = np.quantile(x, QUANTILES)
    return {
        "n": int(len(x)),
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if len(x) > 1 else None,
        "quantiles": {f"{p:g}": float(v) for p, v in zip(QUANTILES, q, strict=True)},
    }


def reference_distances(values: np.ndarray, reference: Reference, variable: str) -> pd.DataFrame:
    """Wasserstein-1 distance from ``values`` to clean ImageNet and to each ImageNet-C severity."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    rows = []
    for group, ref in reference.groups(variable).items():
        rows.append(
            {
                "group": group,
                "n_reference": len(ref),
                "reference_median": float(np.median(ref)),
                "wasserstein": float(wasserstein_distance(x, ref)) if len(x) else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["group", "n_reference", "reference_median", "wasserstein"])


def closest_group(distances: pd.DataFrame) -> str | None:
    d = distances.dropna(subset=["wasserstein"])
    return None if d.empty else str(d.loc[d["wasserstein"].idxmin(), "group"])


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion (good at small n and near 0 or 1)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def accuracy(correct: Iterable[bool]) -> dict[str, Any]:
    c = np.asarray(list(correct) if not isinstance(correct, np.ndarray) else correct, dtype=bool)
    lo, hi = wilson_interval(int(c.sum()), len(c))
    return {"value": float(c.mean()) if len(c) else None, "n": int(len(c)), "ci95": [lo, hi]}


def class_quality(
    scores: pd.DataFrame, variable: str, direction: int, classes: list[str] | None
) -> pd.DataFrame:
    """Per class: n, median Q (and accuracy when ``correct`` is there), worst quality first."""
    if "label" not in scores or (scores["label"] < 0).all():
        return pd.DataFrame(columns=["class", "n", "median"])
    grouped = scores[scores["label"] >= 0].groupby("label")
    out = grouped[variable].agg(n="size", median="median").reset_index()
    if "correct" in scores.columns:
        out["accuracy"] = grouped["correct"].mean().to_numpy()
    if classes is not None:
        out["class"] = [classes[i] if 0 <= i < len(classes) else str(i) for i in out["label"]]
    else:
        from iqa_lib import imagenet

        out["class"] = [imagenet.wnid_of(int(i)) for i in out["label"]]
    ascending = direction >= 0  # worst first: low when higher is better
    out = out.sort_values("median", ascending=ascending, kind="stable").reset_index(drop=True)
    return out[["class", "label", "n", "median", *(["accuracy"] if "accuracy" in out else [])]]


def summarise_scorer(
    name: str,
    scores: pd.DataFrame,
    meta: Mapping[str, Any],
    references: Mapping[str, tuple[Reference | None, str]],
) -> dict[str, Any]:
    """The summary entry of one scorer (``references``: variable -> (reference, why none))."""
    spec = str(meta.get("spec", name))
    entry: dict[str, Any] = {
        "spec": spec,
        "kind": meta.get("kind"),
        "label_space": meta.get("label_space"),
        "label_note": meta.get("label_note"),
        "variables": {},
        "accuracy": accuracy(scores["correct"]) if "correct" in scores.columns else None,
    }
    for variable in (v for v in Q_VARIABLES if v in scores.columns):
        values = scores[variable].to_numpy(np.float64)
        direction = quality_direction(spec, variable)
        item = describe_values(values) | {"direction": direction, "direction_words": direction_words(direction)}
        ref, why = references.get(variable, (None, "no reference"))
        if ref is not None:
            distances = reference_distances(values, ref, variable)
            item["reference"] = {
                "file": ref.path.name if ref.path else None,
                "path": str(ref.path) if ref.path else None,
                "made_from": ref.info.get("made_from"),
                "distances": dict(zip(distances["group"], distances["wasserstein"], strict=True)),
                "closest": closest_group(distances),
            }
        else:
            item["reference"] = None
            item["no_reference"] = why
        entry["variables"][variable] = item
    entry["predicted_accuracy"] = None
    if "q_p" in scores.columns:
        from iqa_lib.audit.accuracy import predict_accuracy

        ref, why = references.get("q_p", (None, "no reference"))
        if ref is not None:
            entry["predicted_accuracy"] = predict_accuracy(ref, scores, entry["accuracy"])
        else:
            entry["predicted_accuracy"] = {"value": None, "actual": entry["accuracy"],
                                           "note": f"no matching reference to fit the estimators on: {why}"}
    return entry


def summary_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "summary.json"
