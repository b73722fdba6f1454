"""A task model's predicted accuracy on an audited (possibly unlabelled) image set.

Fitted on the model's reference (its ``q_p``, ``q_h`` and ``correct`` on clean
ImageNet and ImageNet-C, aligned by ``row``; see :mod:`iqa_lib.audit.reference`),
applied to the model's outputs on the user's images:

The audit states the candidate with the lowest leave-one-corruption-out error on the
reference (below), with how far ahead of the next one it is (:func:`runner_up_gap`), and
shows the others beside it; ATC-MC when none can be validated (prior.md's safer ATC).

- ATC (Garg et al. 2022): a threshold on the model's confidence chosen so that the
  share of reference images above it equals the reference accuracy; the prediction
  is the share of the user's images above it. Two scores: max-softmax ``q_p``
  (ATC-MC) and negative entropy ``-q_h`` (ATC-NE); in prior.md Lite0 NE 2.3 vs MC
  2.4 points, Lite1 MC 3.3 vs NE 4.5.
- not a candidate: the Q-line on q_p (probit of each reference group's accuracy on probit
  of its mean q_p, a least-squares line; ``loco_validation(data, ["q_line"])`` validates
  it). On the reference's classes it is closer than ATC (leaving one corruption out Lite0
  2.1 points, Lite1 2.6; ImageNet-C's extras and realistic curator shifts 1.4-2.4), but
  fitted on half the classes and tested on the other half ATC-MC is closer on those shifts
  (Lite1 2.7 / 2.2 points against 3.7 / 3.8), and the audit's own validation, on the
  reference's classes, could not see it (docs/mini-reproduction/prior.md).
- AC (average confidence) and DoC (Guillory et al. 2021), for comparison; both
  are biased low for the under-confident EfficientNet-Lite models.

Three kinds of uncertainty, and a check, reported side by side:

- the prediction interval (``prediction_interval``, level ``prediction_interval_level``,
  0.9): split conformal over the reference's leave-one-corruption-out errors, one
  score per held-out corruption family, sized for the user's n
  (:mod:`iqa_lib.audit.interval`); it covers the error an unseen ImageNet-C-like
  shift causes, which the bootstrap does not. Withheld (None) when the check below
  says the data lie outside the reference;
- ``in_reference``: whether the images' confidence distribution (q_p, -q_h) lies
  within what the reference's held-out corruptions cover, with the numbers in
  ``in_reference_reason``;
- the 95% interval (``ci95``, also ``bootstrap_interval_images``): a percentile
  bootstrap over the user's images (the reference fit held fixed): how much the
  estimate would move with another sample of images like these, and nothing more;
- the validated error band: leave-one-corruption-out on the reference itself
  (fit on clean plus the other corruptions, predict each severity group of the
  held-out one), the mean and the largest absolute error in accuracy points:
  how far the estimator is off under a shift it has not seen. Each held-out
  corruption's severities are also predicted pooled, a set that mixes shifts as a
  user's images do: the stated estimator is the one whose mean error is lowest
  on the worse of the two kinds of set (a set-level score such as the nuclear
  norm can be right on every single group and far off on their mixture). It is computed
  from the reference at each audit (15 x 2 threshold fits, well under a second)
  and for the shipped Lite0 reference reproduces prior.md's table
  (:data:`PRIOR_MD_LITE0`). Beside it the clean check (:func:`clean_check`): each
  estimator fitted on the corrupted groups only and read on the reference's clean
  images, the nearly clean set that leaving one corruption out never holds out; an
  estimator more than :data:`CLEAN_CHECK_PTS` points off there is not stated (for the
  shipped Lite0 reference ATC-NE reads 0.0, ATC-MC -0.6, DoC -10.6, AC -15.2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as t_dist

from iqa_lib.analysis.prior.estimators import clip_accuracy, estimate_accuracy, fit_own
from iqa_lib.audit.interval import (
    PI_LEVEL,
    ShiftFit,
    interval_words,
    min_families,
    prediction_interval,
    reference_check,
    shift_fit,
)
from iqa_lib.audit.logit_accuracy import (
    AUDIT_LOGIT_METHODS,
    ReferenceGroups,
    logit_clean_check,
    logit_estimates,
    logit_loco,
    reference_logits,
)
from iqa_lib.audit.reference import (
    CLEAN,
    CORRECT,
    ROW,
    MisalignedReference,
    Reference,
    ReferenceError,
)

N_BOOTSTRAP = 1000
LEVEL = 0.95
SEED = 0
METHOD_WORDS = {
    "mano": "MaNo (scaled 4-norm of the softmax matrix, linear fit to accuracy on the reference; Xie et al. 2024)",
    "nuclear": "nuclear norm of the softmax matrix, linear fit to accuracy on the reference (Deng et al. 2023)",
    "atc_mc": "ATC-MC (threshold on max-softmax confidence q_p)",
    "atc_ne": "ATC-NE (threshold on negative entropy -q_h)",
    "ac": "AC (average max-softmax confidence)",
    "doc": "DoC (reference accuracy minus the drop in average confidence)",
}
SHORT = {"atc_mc": "ATC-MC", "atc_ne": "ATC-NE", "ac": "AC", "doc": "DoC", "mano": "MaNo",
         "nuclear": "nuclear norm"}
DEFAULT_ATC = "atc_mc"
# the estimators from the model's own outputs (q_p, q_h), in the order the report lists them
# (not the Q-line: see the module's notes)
OWN_AUDIT_METHODS = ("atc_mc", "atc_ne", "ac", "doc")
# The validation in docs/mini-reproduction/prior.md (leave-one-corruption-out on the 500-image
# ImageNet sample and its ImageNet-C, 75 held-out groups), Lite0, accuracy points: what the
# shipped reference's own validation must reproduce (tests/test_audit_summary.py checks it).
PRIOR_MD_LITE0 = {
    "atc_ne": {"mean_abs_error_pts": 2.3, "max_abs_error_pts": 8.0},
    "atc_mc": {"mean_abs_error_pts": 2.4, "max_abs_error_pts": 8.8},
    "doc": {"mean_abs_error_pts": 7.0, "max_abs_error_pts": 15.8},
    "ac": {"mean_abs_error_pts": 8.0, "max_abs_error_pts": 15.4},
}
REBUILD = (
    "rebuild it from the labelled score file it was made from: `iqa-kit reference --scorer SPEC "
    "--scores SCORES.parquet --out DIR` (or `--manifest` to score a labelled reference manifest), "
    "then audit with `--reference DIR`"
)


def reference_outputs(ref: Reference) -> pd.DataFrame:
    """The model's aligned reference outputs: corruption, severity, q_p, (q_h), correct.

    Raises :class:`ReferenceError` saying why a reference cannot predict accuracy.
    """
    where = ref.path.name if ref.path else ref.spec
    if CORRECT not in set(ref.frame["variable"].unique()):
        raise ReferenceError(
            f"the reference {where} keeps no {CORRECT!r} (made before references kept it, or from "
            f"unlabelled images), so no accuracy can be predicted from it; {REBUILD}"
        )
    if ROW not in ref.frame.columns:
        raise ReferenceError(
            f"the reference {where} has {CORRECT!r} but no {ROW!r} column to align it with q_p; {REBUILD}"
        )
    if "q_p" not in set(ref.frame["variable"].unique()):
        raise ReferenceError(f"the reference {where} has no q_p (not a task model's reference)")
    variables = ["q_p", *(["q_h"] if "q_h" in set(ref.frame["variable"].unique()) else []), CORRECT]
    data = ref.aligned(variables)
    if not np.isin(data[CORRECT].to_numpy(), (0.0, 1.0)).all():
        raise MisalignedReference(f"the reference {where}: {CORRECT!r} must be 0 or 1")
    if data.empty:
        raise ReferenceError(f"the reference {where} has no image with both q_p and {CORRECT!r}")
    return data


def _reference_dict(data: pd.DataFrame, groups: bool = False) -> dict[str, np.ndarray | None]:
    """The reference's outputs; with ``groups`` each row's (corruption, severity) group too, the
    Q-line's points (only when the Q-line is asked for: it is not a candidate)."""
    out = {"q_p": data["q_p"].to_numpy(np.float64), "correct": data[CORRECT].to_numpy(np.float64),
           "q_h": data["q_h"].to_numpy(np.float64) if "q_h" in data else None}
    if groups:
        out["group"] = data.groupby(["corruption", "severity"], sort=True, observed=True).ngroup().to_numpy(np.int64)
    return out


LOCO_COLUMNS = ["method", "corruption", "severity", "n", "predicted", "actual", "var_d", "pooled"]


def loco_validation(data: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Leave-one-corruption-out on the reference: per method, held-out corruption and severity,
    the predicted and actual accuracy (fit on clean plus every other corruption), with the
    estimators of :func:`iqa_lib.analysis.prior.estimators.fit_own`, as prior.md's, and
    ``var_d``: the group's per-image variance of (correct minus the image's share of the
    estimate), the sampling noise of the residual (:mod:`iqa_lib.audit.interval`).

    One more row per held-out corruption with two or more severities (``pooled``, severity 0):
    its severities together, a set that mixes shifts as a user's images do. An estimator that is
    an average over images (ATC, AC, DoC) predicts a mixture as the mean of its parts; a
    set-level score (the nuclear norm) need not, and only a mixed set shows it.

    Empty when the reference has fewer than two corruptions besides clean.
    """
    corruption = data["corruption"].to_numpy()
    held = [c for c in pd.unique(corruption) if c != CLEAN]
    if len(held) < 2 or not (corruption == CLEAN).any():
        return pd.DataFrame(columns=LOCO_COLUMNS)
    ref = _reference_dict(data, groups="q_line" in methods)
    severity = data["severity"].to_numpy()
    rows = [row for c in held for row in _held_out_rows(ref, corruption == c, severity, str(c), methods)]
    return pd.DataFrame(rows, columns=LOCO_COLUMNS)


def _held_out_rows(
    ref: dict[str, np.ndarray | None], held: np.ndarray, severity: np.ndarray, corruption: str, methods: list[str]
) -> list[dict[str, Any]]:
    """One held-out corruption (``held``: its rows): fit on the other rows, and per method and
    severity group of the held-out rows, the predicted and actual accuracy and ``var_d``."""
    sev, inv = np.unique(severity[held], return_inverse=True)
    own = fit_own({k: (None if v is None else v[~held]) for k, v in ref.items()})
    target = {k: (None if v is None else v[held]) for k, v in ref.items()}
    pooled_contrib = own.contributions(target)
    # each severity group is its own set (the Q-line's shares are a tangent at the set's mean)
    members = [np.flatnonzero(inv == j) for j in range(sev.size)]
    group_contrib = [own.contributions({k: (None if v is None else v[i]) for k, v in target.items()})
                     for i in members]
    m = ref["correct"][held]
    rows = []
    for k in (k for k in methods if k in pooled_contrib):
        for j, s in enumerate(sev):
            c, mj = group_contrib[j][k], m[members[j]]
            pred, actual = float(clip_accuracy(c.mean())), float(mj.mean())
            d = mj - c  # per image: correct minus its share of the estimate
            rows.append({"method": k, "corruption": corruption, "severity": int(s), "n": int(mj.size),
                         "predicted": pred, "actual": actual,
                         "var_d": float(max((d * d).mean() - (actual - pred) ** 2, 0.0)), "pooled": False})
        if sev.size > 1:  # the severities together
            d = m - pooled_contrib[k]
            pooled = float(clip_accuracy(pooled_contrib[k].mean()))
            gap = float(m.mean() - pooled)
            rows.append({"method": k, "corruption": corruption, "severity": 0, "n": int(m.size),
                         "predicted": pooled, "actual": float(m.mean()),
                         "var_d": float(max((d * d).mean() - gap * gap, 0.0)), "pooled": True})
    return rows


CLEAN_COLUMNS = ["method", "n", "predicted", "actual"]
CLEAN_CHECK_PTS = 5.0  # a candidate further off than this on the clean images held out is not stated


def clean_check(data: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Each method fitted on the reference's corrupted groups only and read on its clean images:
    the nearly clean set that leaving one corruption out never holds out (it always keeps the
    clean images in the fit), and the set users meet most. Empty without clean or corrupted rows."""
    held = data["corruption"].to_numpy() == CLEAN
    if not held.any() or held.all():
        return pd.DataFrame(columns=CLEAN_COLUMNS)
    ref = _reference_dict(data, groups="q_line" in methods)
    rows = _held_out_rows(ref, held, data["severity"].to_numpy(), CLEAN, methods)  # one group: severity 0
    return pd.DataFrame(rows, columns=LOCO_COLUMNS)[CLEAN_COLUMNS]


def validation_bands(table: pd.DataFrame, clean: pd.DataFrame | None = None) -> dict[str, dict[str, Any]]:
    """Per method: mean and largest absolute error (accuracy points) and the bias over the
    held-out (corruption, severity) groups; over the pooled sets (each corruption's severities
    together), their mean error; ``selection_error_pts``, the larger of the two means, what the
    audit ranks the estimators by: an audited set may be one shift or a mixture, so the stated
    estimator must be good on both (a mean over all sets would let 75 groups outvote 15 pools).
    With ``clean`` (:func:`clean_check`), ``clean_error_pts``: the signed error on the clean
    images held out (None where not checked)."""
    clean_error = ({} if clean is None else
                   {str(r.method): 100 * (r.predicted - r.actual) for r in clean.itertuples()})
    out = {}
    for method, g in table.groupby("method", sort=False):
        pooled = g["pooled"].to_numpy(bool) if "pooled" in g else np.zeros(len(g), dtype=bool)
        err = 100 * (g["predicted"] - g["actual"]).to_numpy(np.float64)
        groups = err[~pooled]
        out[str(method)] = {
            "mean_abs_error_pts": float(np.abs(groups).mean()),
            "max_abs_error_pts": float(np.abs(groups).max()),
            "bias_pts": float(groups.mean()),
            "groups": int(groups.size),
            "corruptions": int(g["corruption"].nunique()),
            "pooled_sets": int(pooled.sum()),
            "pooled_mean_abs_error_pts": float(np.abs(err[pooled]).mean()) if pooled.any() else None,
            "selection_error_pts": float(max(np.abs(groups).mean(),
                                             np.abs(err[pooled]).mean() if pooled.any() else 0.0)),
            "clean_error_pts": clean_error.get(str(method)),
        }
    return out


def predict_accuracy(
    ref: Reference,
    target: pd.DataFrame,
    actual: Mapping[str, Any] | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = SEED,
    level: float = LEVEL,
    logits: np.ndarray | None = None,
) -> dict[str, Any]:
    """The summary's ``predicted_accuracy`` of one task model on ``target`` (its score rows).

    ``logits``: the target's kept logits, aligned with its rows (:func:`iqa_lib.scoring.logits.read_logits`);
    with them and a reference that kept its own, MaNo and the nuclear norm join ATC, AC
    and DoC (:mod:`iqa_lib.audit.logit_accuracy`) and compete to be the stated estimator.

    ``actual``: the measured accuracy on labelled images (the summary's ``accuracy``
    entry), put beside the prediction. A reference that cannot predict (no
    ``correct``, no ``row``) gives ``{"value": None, "note": why}``; misaligned data raises.
    """
    actual = dict(actual) if actual else None
    try:
        data = reference_outputs(ref)
    except MisalignedReference:
        raise  # a broken file is an error to fix, not a reference without correctness
    except ReferenceError as exc:
        return {"value": None, "note": str(exc), "actual": actual}
    kept = _finite_outputs(target, data)
    if kept is None:
        return {"value": None, "note": "no image of this dataset has a finite q_p", "actual": actual}
    n = len(kept["q_p"])
    table, loco, clean, logit_note = _estimates_and_validation(ref, data, target, kept, logits,
                                                               (n_bootstrap, seed, level))
    methods = [k for k in (*OWN_AUDIT_METHODS, *AUDIT_LOGIT_METHODS) if k in table.index]
    bands = validation_bands(loco, clean)
    chosen, why, gap = _stated_method(methods, bands, loco)
    check = reference_check(data, kept, level=PI_LEVEL, seed=seed)
    fits = {k: shift_fit(loco, k, PI_LEVEL) for k in methods if k in bands}
    estimates = {k: _estimate(table, k, fits.get(k), check["in_reference"], n, bands) for k in methods}
    stated = estimates[chosen]
    out = {
        "value": stated["value"],
        "ci95": stated["ci95"],
        "bootstrap_interval_images": stated["bootstrap_interval_images"],
        "prediction_interval": stated["prediction_interval"],
        "prediction_interval_level": PI_LEVEL,
        "prediction_interval_how": _interval_how(fits.get(chosen), check["in_reference"]),
        "in_reference": check["in_reference"],
        "in_reference_reason": check["reason"],
        "reference_distance": {"distance": check["distance"], "threshold": check["threshold"],
                               "nearest_group": check["nearest"]},
        "method": chosen,
        "method_name": SHORT[chosen],
        "method_words": METHOD_WORDS[chosen],
        "why_method": why,
        "runner_up_gap": gap,
        "n": int(n),
        "n_bootstrap": int(n_bootstrap),
        "interval": f"{level:.0%} percentile bootstrap over this dataset's images (reference fit fixed)",
        "validation": bands.get(chosen),
        "validation_how": (
            "leave-one-corruption-out on the reference: fit on clean and the other corruptions, "
            "predict each severity group of the held-out one, and its severities pooled (a mixed set); "
            "absolute errors in accuracy points; and the clean images held out (fit on the corrupted "
            "groups only; clean_error_pts, signed): an estimator more than "
            f"{CLEAN_CHECK_PTS:g} points off there is not stated"
        ),
        "reference_accuracy": float(table["reference_accuracy"].iloc[0]),
        "reference_images": int(len(data)),
        "estimates": estimates,
        "actual": actual,
        "note": None,
    }
    return out | logit_note


def _estimates_and_validation(
    ref: Reference, data: pd.DataFrame, target: pd.DataFrame, kept: dict[str, np.ndarray],
    logits: np.ndarray | None, boot: tuple[int, int, float],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """The estimates (indexed by method), their leave-one-corruption-out table, their clean
    check (:func:`clean_check`) and a note: the own-output estimators, and with the target's and
    the reference's logits MaNo and the nuclear norm too (the note, only when the target has
    logits, says why not)."""
    table = estimate_accuracy(_reference_dict(data), {"q_p": kept["q_p"], "q_h": kept.get("q_h")},
                              n_bootstrap=boot[0], seed=boot[1], level=boot[2])
    own_methods = [k for k in OWN_AUDIT_METHODS if k in set(table["method"])]
    loco, clean = loco_validation(data, own_methods), clean_check(data, own_methods)
    ref_logits = reference_logits(ref) if logits is not None else None
    if logits is None:
        return table.set_index("method"), loco, clean, {}
    if ref_logits is None:
        return table.set_index("method"), loco, clean, {"logit_note": (
            "MaNo and the nuclear norm not computed: the reference keeps no logits beside it; "
            "make it from a score file scored with its logits kept")}
    rows = np.flatnonzero(_finite_mask(target, data))
    groups = ReferenceGroups(data, ref_logits, size=int(rows.size))  # the nuclear norm at the set's size
    table = pd.concat([table, logit_estimates(groups, float(data[CORRECT].mean()), logits, rows, *boot)])
    loco = pd.concat([loco, pd.DataFrame(logit_loco(groups, ref_logits.shape[1]), columns=LOCO_COLUMNS)],
                     ignore_index=True)
    clean = pd.DataFrame([*clean.to_dict("records"), *logit_clean_check(groups, ref_logits.shape[1])],
                         columns=CLEAN_COLUMNS)
    return table.set_index("method"), loco, clean, {}


def _stated_method(
    methods: list[str], bands: Mapping[str, dict[str, Any]], loco: pd.DataFrame
) -> tuple[str, str, dict[str, Any] | None]:
    """The estimator the audit states, why, and how far ahead of the next one it is: the one
    with the lowest leave-one-corruption-out error on this reference (ATC-MC when none could be
    validated). Two estimators a few tenths of a point apart are not told apart by 15
    corruptions, and the words say so (:func:`runner_up_gap`)."""
    ranked = sorted((k for k in methods if k in bands), key=lambda k: bands[k]["selection_error_pts"])
    if not ranked:
        return DEFAULT_ATC, "ATC-MC: this reference has too few corruptions to validate on", None
    off_clean = [k for k in ranked if abs(bands[k].get("clean_error_pts") or 0.0) > CLEAN_CHECK_PTS]
    validated = [k for k in ranked if k not in off_clean] or ranked
    best = bands[validated[0]]
    why = (f"{SHORT[validated[0]]}: the lowest leave-one-corruption-out error on this reference, "
           f"{best['mean_abs_error_pts']:.1f} points on average over {best['groups']} held-out groups of "
           f"{best['corruptions']} corruptions")
    if best["pooled_sets"]:
        why += (f" and {best['pooled_mean_abs_error_pts']:.1f} over the {best['pooled_sets']} sets that pool "
                f"each one's severities (ranked by the worse of the two)")
    why += _clean_words(ranked, validated, off_clean, bands)
    if len(validated) < 2:
        return validated[0], why, None
    runner = validated[1]
    gap = runner_up_gap(loco, validated[0], runner)
    why += f" (next: {SHORT[runner]}, {bands[runner]['selection_error_pts']:.1f}"
    if gap is not None:
        lo, hi = gap["ci_pts"]
        why += (f"; its error on the held-out groups minus this one's: {gap['diff_pts']:+.2f} points, "
                f"{gap['level']:.0%} interval {lo:+.2f} to {hi:+.2f} over n = {gap['corruptions']} corruptions: "
                + ("this one is clearly ahead" if lo > 0 else "not a clear difference"))
    return validated[0], why + ")", gap


def _clean_words(ranked: list[str], validated: list[str], off_clean: list[str],
                 bands: Mapping[str, dict[str, Any]]) -> str:
    """Why a better-ranked estimator was passed over: it reads the clean images held out more
    than :data:`CLEAN_CHECK_PTS` off (or, when every one does, that the stated one does too)."""
    def off(k: str) -> str:
        return f"{SHORT[k]} reads them {bands[k]['clean_error_pts']:+.1f}"

    if set(off_clean) == set(ranked):
        return (f"; every candidate reads the reference's clean images, held out, more than "
                f"{CLEAN_CHECK_PTS:g} points off ({', '.join(off(k) for k in ranked)})")
    passed = [k for k in ranked[:ranked.index(validated[0])] if k in off_clean]
    if not passed:
        return ""
    return (f"; ranked ahead but not stated, as more than {CLEAN_CHECK_PTS:g} points off on the reference's "
            f"clean images held out (fitted on the corrupted groups only): {', '.join(off(k) for k in passed)}")


def runner_up_gap(loco: pd.DataFrame, best: str, runner: str, level: float = LEVEL) -> dict[str, Any] | None:
    """The runner-up's mean absolute error minus the stated estimator's over the held-out
    (corruption, severity) groups, paired by group, with a t interval over the held-out
    corruptions (the independent units: a corruption's severities share its shift). None with
    fewer than 2 corruptions."""
    groups = loco[~loco["pooled"].astype(bool)]
    err = (groups.assign(abs_err=100 * (groups["predicted"] - groups["actual"]).abs())
           .pivot_table(index=["corruption", "severity"], columns="method", values="abs_err"))
    if best not in err or runner not in err:
        return None
    per_corruption = (err[runner] - err[best]).dropna().groupby(level="corruption").mean()
    k = int(per_corruption.size)
    if k < 2:
        return None
    mean = float(per_corruption.mean())
    half = float(t_dist.ppf(0.5 + level / 2, k - 1) * per_corruption.std(ddof=1) / math.sqrt(k))
    return {"stated": best, "runner_up": runner, "diff_pts": mean, "ci_pts": [mean - half, mean + half],
            "corruptions": k, "level": level}


def _finite_mask(target: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    """The target rows with a finite q_p (and q_h, when the reference has it too)."""
    keep = np.isfinite(target["q_p"].to_numpy(np.float64))
    if "q_h" in target and "q_h" in data:
        keep &= np.isfinite(target["q_h"].to_numpy(np.float64))
    return keep


def _finite_outputs(target: pd.DataFrame, data: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """The target's q_p (and q_h when the reference has it too) on the images where all are
    finite; None when there is no such image."""
    keep = _finite_mask(target, data)
    if not keep.any():
        return None
    out = {"q_p": target["q_p"].to_numpy(np.float64)[keep]}
    if "q_h" in target and "q_h" in data:
        out["q_h"] = target["q_h"].to_numpy(np.float64)[keep]
    return out


def _estimate(
    table: pd.DataFrame, method: str, fit: ShiftFit | None, in_reference: bool | None, n: int,
    bands: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """One estimator's entry of ``estimates``: its prediction, bootstrap interval, prediction
    interval (only with a fit and images inside the reference) and validated error band."""
    value = float(table.at[method, "predicted"])
    ci = [float(table.at[method, "ci_low"]), float(table.at[method, "ci_high"])]
    pi = prediction_interval(fit, value, n) if fit is not None and in_reference else None
    return {"method": method, "name": SHORT[method], "value": value, "ci95": ci,
            "bootstrap_interval_images": ci, "prediction_interval": pi, "validation": bands.get(method)}


def _interval_how(fit: ShiftFit | None, in_reference: bool | None) -> str:
    """How the stated estimator's prediction interval was made, or why it is not given."""
    if fit is None:
        return ("not given: the reference has too few corruptions to leave one out "
                f"(a {PI_LEVEL:.0%} conformal interval needs {min_families(PI_LEVEL)})")
    if not math.isfinite(fit.quantile):
        return (f"not given: the reference has {fit.families} corruptions, too few for a "
                f"{PI_LEVEL:.0%} conformal interval (needs {min_families(PI_LEVEL)})")
    if not in_reference:
        return (f"not given (withheld): these images' confidence lies outside what the reference's "
                f"held-out corruptions cover (see in_reference_reason), where its validated error says "
                f"nothing about the error here. When given: {interval_words(fit)}")
    return interval_words(fit)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _span(interval: list[float]) -> str:
    return f"{100 * interval[0]:.0f}-{100 * interval[1]:.0f}%"


def prediction_sentence(name: str, pred: Mapping[str, Any] | None) -> str:
    """The prediction in words, for the report."""
    if not pred:
        return f"{name}: not a task model with an ImageNet reference; no accuracy is predicted."
    if pred.get("value") is None:
        return f"{name}: no accuracy prediction. {pred.get('note') or ''}".strip()
    text = f"{name} should expect about {_pct(pred['value'])} top-1 accuracy here ({pred['method_name']}"
    pi = pred.get("prediction_interval")
    level = pred.get("prediction_interval_level", PI_LEVEL)
    if pi is not None:
        text += (f"; {level:.0%} prediction interval {_span(pi)}, which allows for the error of a shift "
                 f"like an unseen ImageNet-C corruption")
    text += f"; 95% interval {_span(pred['ci95'])} over these {pred['n']} images, from their sampling alone"
    return text + _validation_words(pred.get("validation")) + _reference_words(pred) + _measured_words(pred)


def _validation_words(band: Mapping[str, Any] | None) -> str:
    """The estimator's validated error on ImageNet-C, closing the sentence's parenthesis."""
    if not band:
        return "; not validated: the reference has too few corruptions to leave one out)."
    pooled, clean = band.get("pooled_mean_abs_error_pts"), band.get("clean_error_pts")
    return (
        f"; on ImageNet-C, with each corruption left out in turn, this estimator was off by "
        f"{band['mean_abs_error_pts']:.1f} points on average and {band['max_abs_error_pts']:.1f} at worst"
        + (f", {pooled:.1f} on each corruption's severities pooled" if pooled is not None else "")
        + (f", and {clean:+.1f} on the clean images held out" if clean is not None else "") + ")."
    )


def _reference_words(pred: Mapping[str, Any]) -> str:
    """Whether the images lie in the reference, and why (nothing for a summary without the check)."""
    inside = pred.get("in_reference")
    reason = pred.get("in_reference_reason") or ""
    if inside is False:
        return (f" Out of reference: {reason} No prediction interval is given: the estimate may be off "
                f"by more than the validated error.")
    if inside is True:
        return f" In reference: {reason}"
    if "in_reference" not in pred:
        return ""
    return f" {reason}" + (" No prediction interval is given." if pred.get("prediction_interval") is None else "")


def _measured_words(pred: Mapping[str, Any]) -> str:
    """The measured accuracy on labelled images, when there is one."""
    actual = pred.get("actual")
    if not (actual and actual.get("value") is not None):
        return ""
    a_lo, a_hi = actual["ci95"]
    return (
        f" Measured on these labelled images: {_pct(actual['value'])} "
        f"(95% CI {100 * a_lo:.0f}-{100 * a_hi:.0f}%, n = {actual['n']})."
    )


def prediction_table(predictions: Mapping[str, Mapping[str, Any] | None]) -> pd.DataFrame:
    """One row per task model and estimator: prediction, bootstrap interval over the images
    (95% low/high), prediction interval (90% PI low/high; NaN when withheld), whether the data
    are in the reference, validated error, actual."""
    rows = [_estimate_row(name, pred, k, est)
            for name, pred in predictions.items() if pred and pred.get("value") is not None
            for k, est in pred["estimates"].items()]
    return pd.DataFrame(rows)


def _estimate_row(name: str, pred: Mapping[str, Any], method: str, est: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`prediction_table`'s row of one task model's estimator."""
    actual = pred.get("actual") or {}
    level = pred.get("prediction_interval_level", PI_LEVEL)
    band = est.get("validation") or {}
    pi = est.get("prediction_interval")
    return {
        "task model": name,
        "estimator": est["name"] + (" (stated)" if method == pred["method"] else ""),
        "predicted": est["value"],
        "95% low": est["ci95"][0],
        "95% high": est["ci95"][1],
        f"{level:.0%} PI low": pi[0] if pi else math.nan,
        f"{level:.0%} PI high": pi[1] if pi else math.nan,
        "in reference": pred.get("in_reference"),
        "LOCO mean abs. error (pts)": band.get("mean_abs_error_pts", math.nan),
        "LOCO worst (pts)": band.get("max_abs_error_pts", math.nan),
        "LOCO bias (pts)": round(band.get("bias_pts", math.nan), 1) + 0.0,  # no "-0.0"
        "actual": actual.get("value", math.nan) if actual else math.nan,
        "n": pred["n"],
    }
