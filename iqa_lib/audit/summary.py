"""What an audit says about a dataset: per scorer and Q variable, its distribution and where it sits.

For each Q variable: n, mean, sd and quantiles (numpy's linear interpolation,
the same as pandas' default), the Wasserstein-1 distance from the dataset's
values to the reference's clean ImageNet values and to each ImageNet-C severity
(corruptions pooled), and the closest of those groups, with whether that closest
group can be read as a severity (:func:`assess_closest`). With a task model
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

from iqa_lib import imagenet
from iqa_lib.audit.accuracy import predict_accuracy
from iqa_lib.audit.reference import CLEAN, Q_VARIABLES, Reference

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
        return _pyiqa_direction(name)
    return 0


def _pyiqa_direction(name: str) -> int:
    """pyiqa's own record of the metric: ``lower_better`` -> -1, else 1; 0 for a name it lacks."""
    try:  # pyiqa loads torch and its model table: only for a pyiqa scorer's summary
        from pyiqa.default_model_configs import DEFAULT_CONFIGS
    except ImportError:
        return 0
    config = DEFAULT_CONFIGS.get(name)
    if config is None:
        return 0
    lower = config.get("metric_opts", {}).get("lower_better")
    if lower is None:
        lower = config.get("lower_better", False)
    return -1 if lower else 1


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


# --- Is the closest group a severity one can read? ---------------------------------------------
#
# The rule (``closest_informative``; the sentence why is ``closest_note``). A variable's closest
# reference group is NOT informative when any of these holds:
#
# 1. validation: on the reference's own ImageNet-C, the variable does not find the severity. Each
#    corruption is held out in turn; each of its severity groups (all its reference images) is
#    matched, by the same Wasserstein-1 distance, to clean and to the severities pooled over the
#    other corruptions; a hit is a nearest group within one severity of the true one and not clean.
#    Fewer than CLOSEST_MIN_HIT_RATE hits -> not informative for any dataset. (Shipped references:
#    Lite0's q_p, q_h, q_l 0.84; BRISQUE 0.41, PIQE 0.36, TV 0.19, NIQE 0.19: an NR-IQA metric moves
#    one way under noise and the other under blur, so its pooled severities do not order a shift.)
# 2. tie: a group whose severity differs from the nearest's (see :func:`severities_differ`) is
#    within CLOSEST_TIE (relative) of the nearest distance: the dataset is about as near to both.
# 3. contradiction (NR-IQA variables, after all scorers are summarised: :func:`annotate_closest`):
#    a task model's confidence (its q_p, itself informative) puts the dataset at a severity that
#    differs from this variable's nearest.
#
# Severities are compared as levels: clean = 0, ImageNet-C severity 1-5. Two levels differ when
# they are more than one apart or one is clean and the other is not.

CLOSEST_TIE = 0.2
CLOSEST_MIN_HIT_RATE = 2 / 3
CONFIDENCE_VARIABLE = "q_p"


def severity_level(group: str | None) -> int | None:
    """``clean`` -> 0, ``severity 3`` -> 3; None for None."""
    if group is None:
        return None
    if group == CLEAN:
        return 0
    return int(str(group).split()[-1])


def severities_differ(a: int, b: int) -> bool:
    """More than one severity apart, or clean against corrupted."""
    return abs(a - b) > 1 or (a == 0) != (b == 0)


def level_words(level: int | None) -> str:
    if level is None:
        return "no reference"
    return "clean ImageNet" if level == 0 else f"ImageNet-C severity {level}"


_VALIDATION_CACHE: dict[tuple, dict[str, Any] | None] = {}


def closest_validation(reference: Reference, variable: str) -> dict[str, Any] | None:
    """Rule 1: how often the variable's nearest pooled group is within one severity of a held-out
    ImageNet-C group's own (see the comment above); None when the reference has no clean group or
    fewer than two corruptions. Kept per reference file (path, size, mtime) and variable."""
    key = None
    if reference.path is not None and Path(reference.path).is_file():
        stat = Path(reference.path).stat()
        key = (str(reference.path), stat.st_size, stat.st_mtime_ns, variable)
        if key in _VALIDATION_CACHE:
            cached = _VALIDATION_CACHE[key]
            return None if cached is None else dict(cached)
    out = _closest_validation(reference, variable)
    if key is not None:
        _VALIDATION_CACHE[key] = None if out is None else dict(out)
    return out


def _closest_validation(reference: Reference, variable: str) -> dict[str, Any] | None:
    df = reference.frame[reference.frame["variable"] == variable]
    corruption = df["corruption"].astype(str).to_numpy()
    severity = df["severity"].to_numpy(np.int64)
    value = df["value"].to_numpy(np.float64)
    clean = value[corruption == CLEAN]
    held = [c for c in pd.unique(corruption) if c != CLEAN]
    if len(clean) == 0 or len(held) < 2:
        return None
    hits = [hit for c in held for hit in _held_out_hits(c, corruption, severity, value)]
    return {
        "within_one_severity": float(np.mean(hits)),
        "groups": len(hits),
        "corruptions": len(held),
        "how": "each ImageNet-C corruption of the reference held out in turn; each of its severity "
        "groups matched to clean and to the severities pooled over the other corruptions; the share "
        "whose nearest group is within one severity of its own (and not clean)",
    }


def _held_out_hits(held: str, corruption: np.ndarray, severity: np.ndarray, value: np.ndarray) -> list[bool]:
    """Per severity group of the ``held`` corruption: whether its nearest group (clean, or a
    severity pooled over the other corruptions) is within one severity of its own, and not clean."""
    rest = (corruption != CLEAN) & (corruption != held)
    pools = {0: value[corruption == CLEAN]} | {
        int(s): value[rest & (severity == s)] for s in np.unique(severity[rest])
    }
    hits = []
    for s in np.unique(severity[corruption == held]):
        x = value[(corruption == held) & (severity == s)]
        d = {k: wasserstein_distance(x, v) for k, v in pools.items() if len(v)}
        nearest = min(d, key=d.__getitem__)
        hits.append(nearest != 0 and abs(nearest - int(s)) <= 1)
    return hits


def assess_closest(
    distances: Mapping[str, float | None], validation: Mapping[str, Any] | None
) -> tuple[bool, str]:
    """Rules 1 and 2: (informative, the sentence why) for one variable's distances."""
    d = {g: float(v) for g, v in distances.items() if v is not None and math.isfinite(v)}
    if not d:
        return False, "no finite distance to any reference group"
    nearest = min(d, key=d.__getitem__)
    if validation is not None and validation["within_one_severity"] < CLOSEST_MIN_HIT_RATE:
        return False, (
            f"not informative: on the reference's own ImageNet-C this variable put only "
            f"{validation['within_one_severity']:.0%} of {validation['groups']} held-out corruption-severity "
            f"groups within one severity of their own, so its nearest group ({nearest}) says little about a severity"
        )
    ties = _ties(d, nearest)
    if ties:
        return False, (
            f"not informative: the distance to {nearest} ({d[nearest]:.3g}) is within "
            f"{CLOSEST_TIE:.0%} of the distance to {', '.join(f'{g} ({d[g]:.3g})' for g in ties)}: "
            "it cannot tell these apart"
        )
    return True, _informative_words(severity_level(nearest), validation)


def _ties(d: Mapping[str, float], nearest: str) -> list[str]:
    """Rule 2: the groups at another severity than ``nearest`` within CLOSEST_TIE of its distance."""
    level = severity_level(nearest)
    return [g for g, v in d.items() if g != nearest and severities_differ(level, severity_level(g))
            and v <= d[nearest] * (1 + CLOSEST_TIE)]


def _informative_words(level: int, validation: Mapping[str, Any] | None) -> str:
    """Why an informative closest group can be read as a severity."""
    checked = (f"; on the reference's own ImageNet-C it found {validation['within_one_severity']:.0%} of "
               f"{validation['groups']} held-out groups within one severity" if validation else
               "; not validated: the reference has too few corruptions to hold one out")
    other = "any ImageNet-C severity" if level == 0 else "clean and any severity more than one away"
    return f"nearest {level_words(level)}, more than {CLOSEST_TIE:.0%} nearer than {other}{checked}"


def annotate_closest(scorers: Mapping[str, dict[str, Any]]) -> dict[str, int | None]:
    """Rule 3 over a summary's scorers (in place): each NR-IQA variable (``q``) whose nearest group
    contradicts a task model's confidence-based one becomes not informative. Returns
    ``closest_severity_from_confidence``: task model -> the level of its q_p's closest group
    (0 = clean, 1-5; None without a reference)."""
    from_confidence, usable = _confidence_levels(scorers)
    for entry in scorers.values():
        item = entry["variables"].get("q")
        if item is not None and (item.get("reference") or {}).get("closest"):
            _check_against_confidence(item, usable)
    return from_confidence


def _confidence_levels(scorers: Mapping[str, dict[str, Any]]) -> tuple[dict[str, int | None], dict[str, int]]:
    """Each task model's q_p closest level, and the levels of those whose closest is informative."""
    from_confidence: dict[str, int | None] = {}
    usable: dict[str, int] = {}
    for name, entry in scorers.items():
        item = entry["variables"].get(CONFIDENCE_VARIABLE)
        if item is None or entry.get("kind") == "nr_iqa":
            continue
        level = severity_level((item.get("reference") or {}).get("closest"))
        from_confidence[name] = level
        if level is not None and item.get("closest_informative"):
            usable[name] = level
    return from_confidence, usable


def _check_against_confidence(item: dict[str, Any], usable: Mapping[str, int]) -> None:
    """Rule 3 for one NR-IQA variable (in place): say when it agrees with the task models'
    confidence; make it not informative when it contradicts one."""
    level = severity_level(item["reference"]["closest"])
    against = {m: lv for m, lv in usable.items() if severities_differ(level, lv)}
    if usable and not against and not item.get("closest_informative", True):
        item["closest_note"] += ("; here it agrees with the task model's confidence ("
                                 + ", ".join(f"{m}: {level_words(lv)}" for m, lv in usable.items()) + ")")
    if against:
        _mark_contradiction(item, level, against)


def _mark_contradiction(item: dict[str, Any], level: int, against: Mapping[str, int]) -> None:
    """Make one NR-IQA variable not informative (in place), saying which task models' confidence
    its nearest severity ``level`` contradicts."""
    contradiction = (
        f"contradicts the task model's confidence: nearest here is {level_words(level)}, but "
        + "; ".join(f"{m}'s q_p puts these images at {level_words(lv)}" for m, lv in against.items())
        + " (read the confidence-based severity)"
    )
    note = item.get("closest_note") or ""
    item["closest_note"] = (f"{note}; it also {contradiction}" if not item.get("closest_informative", True)
                            and note else f"not informative: it {contradiction}")
    item["closest_informative"] = False


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
        out["class"] = [imagenet.wnid_of(int(i)) for i in out["label"]]
    ascending = direction >= 0  # worst first: low when higher is better
    out = out.sort_values("median", ascending=ascending, kind="stable").reset_index(drop=True)
    return out[["class", "label", "n", "median", *(["accuracy"] if "accuracy" in out else [])]]


def summarise_scorer(
    name: str,
    scores: pd.DataFrame,
    meta: Mapping[str, Any],
    references: Mapping[str, tuple[Reference | None, str]],
    logits: np.ndarray | None = None,
) -> dict[str, Any]:
    """The summary entry of one scorer (``references``: variable -> (reference, why none);
    ``logits``: the score file's kept logits, for the accuracy estimators that need them)."""
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
            item["closest_validation"] = closest_validation(ref, variable)
            item["closest_informative"], item["closest_note"] = assess_closest(
                item["reference"]["distances"], item["closest_validation"])
        else:
            item["reference"] = None
            item["no_reference"] = why
            item["closest_informative"], item["closest_note"] = False, f"no reference: {why}"
        entry["variables"][variable] = item
    entry["predicted_accuracy"] = None
    if "q_p" in scores.columns:
        ref, why = references.get("q_p", (None, "no reference"))
        if ref is not None:
            entry["predicted_accuracy"] = predict_accuracy(ref, scores, entry["accuracy"], logits=logits)
        else:
            entry["predicted_accuracy"] = {"value": None, "actual": entry["accuracy"],
                                           "note": f"no matching reference to fit the estimators on: {why}"}
    return entry


def summary_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "summary.json"
