"""The audit's first screen in sentences: per task model, what accuracy to expect and how far to trust it.

Read from a summary (``summary.json``'s dict), so a report or a reader of an old
audit folder gets the same sentences; every key of ``predicted_accuracy`` that
came later (``prediction_interval``, ``in_reference``, ``bootstrap_interval_images``,
...) is read with ``.get``. :func:`headline` gives the list that summary.json
keeps as ``headline``, ``iqa-kit audit`` prints at the end of its run and the
report shows first; :data:`CAVEAT` is summary.json's ``caveat``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from iqa_lib.audit.summary import level_words, severity_level

CAVEAT = (
    "The predicted accuracy is validated only on ImageNet-C-like shifts of ImageNet classes: the "
    "estimator's error was measured on the reference by leaving each ImageNet-C corruption out and "
    "predicting it from the rest. For other shifts, other classes or other kinds of images it is a "
    "guess: check it against a few labelled images."
)
NO_TASK_MODEL = (
    "No task model (classifier) among the scorers: accuracy is neither measured nor predicted "
    "(add one, e.g. --scorer efficientnet_lite:lite0)."
)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _range(interval: Sequence[float] | None) -> str | None:
    if not interval or len(interval) != 2 or any(v is None or not math.isfinite(v) for v in interval):
        return None
    return f"{100 * interval[0]:.0f}-{100 * interval[1]:.0f}%"


def _clause(text: str | None) -> str:
    """A sentence made a clause: no final full stop, a capital first letter lowered (not an acronym)."""
    text = (text or "").strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text


def task_models(summary: Mapping[str, Any]) -> list[str]:
    """Scorers with a predicted or a measured accuracy; those whose images lie outside their
    reference (``in_reference`` false) first, otherwise in the summary's order."""
    names = [n for n, e in summary.get("scorers", {}).items()
             if e.get("predicted_accuracy") is not None or e.get("accuracy")]
    outside = [n for n in names if (summary["scorers"][n].get("predicted_accuracy") or {}).get("in_reference") is False]
    return outside + [n for n in names if n not in outside]


def measured(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The measured accuracy of a task model (Wilson 95%), or None without usable labels."""
    pred = entry.get("predicted_accuracy") or {}
    actual = pred.get("actual") or entry.get("accuracy")
    return actual if actual and actual.get("value") is not None else None


def outside_interval(value: float, interval: Sequence[float] | None) -> bool:
    return bool(_range(interval)) and not interval[0] <= value <= interval[1]


def model_items(entry: Mapping[str, Any], confidence_level: int | None = None) -> list[tuple[str, bool]]:
    """The headline sentences of one task model, without its name, each with whether it is a
    warning (images outside the reference, a measurement outside the prediction interval)."""
    pred = entry.get("predicted_accuracy") or {}
    items = [*_outside_items(pred), *_prediction_items(entry, pred), *_reference_items(pred),
             *_measured_items(entry, pred)]
    if confidence_level is not None:
        items.append((f"by its confidence (q_p) these images are nearest {level_words(confidence_level)}.", False))
    return items


def _because(pred: Mapping[str, Any]) -> str:
    """``: <why the images are or are not like the reference>``, or nothing without a reason."""
    reason = _clause(pred.get("in_reference_reason"))
    return f": {reason}" if reason else ""


def _outside_items(pred: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """The warning that leads when the images lie outside the reference."""
    if pred.get("in_reference") is not False:
        return []
    return [("these images are NOT like its reference (clean ImageNet and ImageNet-C)" + _because(pred)
             + ". The accuracy predicted below is a guess, not a validated estimate.", True)]


def _prediction_items(entry: Mapping[str, Any], pred: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """The predicted accuracy with its intervals, or why there is none."""
    if pred.get("value") is not None:
        text = f"predicted top-1 accuracy {_pct(pred['value'])}"
        text += f" ({pred['method_name']})" if pred.get("method_name") else ""
        return [(text + _interval_clause(pred) + _bootstrap_clause(pred) + ".", False)]
    if entry.get("predicted_accuracy") is not None:
        return [("no accuracy prediction" + (f": {pred['note']}" if pred.get("note") else "."), False)]
    return []


def _interval_clause(pred: Mapping[str, Any]) -> str:
    """The prediction interval, or why it is not given (withheld, not computable, an older summary)."""
    pi = pred.get("prediction_interval")
    if _range(pi):
        level = pred.get("prediction_interval_level")
        level_text = f"{level:.0%} " if isinstance(level, int | float) else ""
        return (f"; {level_text}prediction interval {_range(pi)}, which covers the error of a shift "
                "like an unseen ImageNet-C corruption (from the estimator's validated "
                "leave-one-corruption-out error on the reference)")
    if pred.get("in_reference") is False:
        return "; no prediction interval: withheld, as these images lie outside what it was validated on"
    if "prediction_interval" in pred:
        why = _clause((pred.get("prediction_interval_how") or "").split(". When given")[0])
        return "; no prediction interval" + (f" ({why})" if why else "")
    band = pred.get("validation")
    return ("; no prediction interval in this summary (written before the audit gave one: rerun it)"
            + (f"; with each ImageNet-C corruption left out the estimator was off by "
               f"{band['mean_abs_error_pts']:.1f} points on average, {band['max_abs_error_pts']:.1f} at worst"
               if band else ""))


def _bootstrap_clause(pred: Mapping[str, Any]) -> str:
    """The bootstrap interval over the images, when the summary has a finite one."""
    boot = pred.get("bootstrap_interval_images") or pred.get("ci95")
    if not _range(boot):
        return ""
    return (f"; 95% bootstrap interval {_range(boot)} over these {pred.get('n', '?')} images "
            "(resampling the images only, not the shift)")


def _reference_items(pred: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """That the images are like the reference, or that nobody knows (no warning either way)."""
    in_ref = pred.get("in_reference")
    if in_ref is True:
        return [("these images are like its reference (clean ImageNet and ImageNet-C)" + _because(pred) + ".",
                 False)]
    if in_ref is None and "in_reference" in pred and pred.get("value") is not None:
        return [("whether these images are like its reference is unknown" + _because(pred) + ".", False)]
    return []


def _measured_items(entry: Mapping[str, Any], pred: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """The measured accuracy, a warning when it falls outside the prediction interval; or that
    there are no labels to measure it on."""
    actual = measured(entry)
    if not actual:
        if pred.get("value") is not None:
            return [("no labels this model's correctness is defined on: accuracy is not measured, "
                     "only predicted.", False)]
        return []
    pi = pred.get("prediction_interval")
    text = f"measured on these labelled images: {_pct(actual['value'])}"
    ci = _range(actual.get("ci95"))
    text += f" (95% CI {ci}, n = {actual.get('n')})" if ci else f" (n = {actual.get('n')})"
    outside = pred.get("value") is not None and outside_interval(actual["value"], pi)
    if outside:
        text += (f", OUTSIDE the prediction interval {_range(pi)}: the prediction is off for "
                 "these images; trust the measurement")
    elif pred.get("value") is not None and _range(pi):
        text += ", inside the prediction interval"
    return [(text + ".", outside)]


def model_lines(name: str, entry: Mapping[str, Any], confidence_level: int | None = None) -> list[str]:
    """The headline sentences of one task model, each starting with its name."""
    return [f"{name}: {text}" for text, _ in model_items(entry, confidence_level)]


def headline_blocks(summary: Mapping[str, Any]) -> dict[str, list[tuple[str, bool]]]:
    """Task model -> :func:`model_items` (for the report's first screen)."""
    return {n: model_items(summary["scorers"][n], confidence_level_of(summary, n)) for n in task_models(summary)}


def headline(summary: Mapping[str, Any]) -> list[str]:
    """summary.json's ``headline``: each task model's sentences (see :func:`model_lines`)."""
    names = task_models(summary)
    if not names:
        return [NO_TASK_MODEL]
    return [line for n in names for line in model_lines(n, summary["scorers"][n], confidence_level_of(summary, n))]


def closest_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line per Q variable with a reference: its closest group and whether it is informative;
    each task model's confidence-based (q_p) closest severity first."""
    first, rest = [], []
    for name, entry in summary.get("scorers", {}).items():
        for variable, item in entry["variables"].items():
            closest = (item.get("reference") or {}).get("closest")
            if closest is None:
                continue
            line = f"{name}.{variable}: closest {closest}"
            if item.get("closest_informative") is False:
                line += f" ({item.get('closest_note') or 'not informative'})"
            (first if variable == "q_p" and entry.get("kind") != "nr_iqa" else rest).append(line)
    return first + rest


def confidence_level_of(summary: Mapping[str, Any], name: str) -> int | None:
    """The level (0 = clean, 1-5) of a task model's q_p closest group; None without one."""
    levels = summary.get("closest_severity_from_confidence")
    if levels is not None:
        return levels.get(name)
    entry = summary["scorers"][name]
    if entry.get("kind") == "nr_iqa":
        return None
    item = entry["variables"].get("q_p") or {}
    return severity_level((item.get("reference") or {}).get("closest"))
