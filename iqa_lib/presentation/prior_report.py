"""The accuracy prior's verdict in words: what ``iqa-kit prior`` prints and ``prior.ipynb`` shows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from iqa_lib.analysis.prior.logit_estimators import LOGIT_LABELS
from iqa_lib.analysis.prior.validation import CLEAN_CHECK_EXCLUDED, USABLE_MEAN_PTS
from iqa_lib.analysis.sample_size import SMALL_N_GROUP_IMAGES, SMALL_N_GROUPS
from iqa_lib.presentation.numbers import count_text


def verdict_text(v: pd.DataFrame, usable_pts: float = USABLE_MEAN_PTS) -> str:
    """The verdict in words, one bullet per task model; "best" is the lowest of the worse of an
    estimator's two mean errors (severity groups, pooled severities)."""

    def ci(lo: float, hi: float) -> str:
        return f" (95% CI {lo:.1f} to {hi:.1f})" if np.isfinite(lo) and np.isfinite(hi) else ""

    def pooled(value: float) -> str:
        return f"; {value:.1f} on each corruption's severities pooled" if np.isfinite(value) else ""

    lines = []
    for r in v.itertuples():
        if getattr(r, "small_n", False):
            lines.append(
                f"- **{r.task_model}**: n too small for a verdict: the held-out groups' accuracies rest on "
                f"as few as {count_text(r.min_group_images)} images ({count_text(r.n_groups)} groups of "
                f"{count_text(r.n_corruptions)} corruptions; at least {SMALL_N_GROUP_IMAGES} images per group "
                f"and {SMALL_N_GROUPS} groups are needed), so no estimator is called usable and no "
                f"estimator is ranked above another. Mean absolute errors, for the record: best of "
                f"M's own outputs {r.best_own} {r.best_own_mae_pts:.1f} points, no-shift baseline "
                f"{r.baseline_mae_pts:.1f}." + _clean_words(r) + _logit_words(r, ranked=False))
            continue
        text = (
            f"- **{r.task_model}**: usable (mean absolute error below {usable_pts:g} points "
            f"within its interval, on the severity groups and on each corruption's severities "
            f"pooled, better than the no-shift baseline's {r.baseline_mae_pts:.1f}, and within "
            f"{usable_pts:g} points on the clean images held out where checked): {r.usable}. "
            f"Best of M's own outputs: {r.best_own}, {r.best_own_mae_pts:.1f} points"
            f"{pooled(getattr(r, 'best_own_pooled_mae_pts', np.nan))}.{_clean_words(r)}"
        )
        if r.best_task_agnostic != "-":
            gain = r.gain_over_baseline_pts
            text += (
                f" Best task-agnostic Q: {r.best_task_agnostic}, {r.best_task_agnostic_mae_pts:.1f} "
                f"points (95% CI {r.best_task_agnostic_ci}): {r.gap_pts:.1f} points worse than "
                f"M's own best{ci(r.gap_ci_low, r.gap_ci_high)}, and "
                f"{abs(gain):.1f} points {'better' if gain >= 0 else 'worse'} than the no-shift "
                f"baseline{ci(r.gain_ci_low, r.gain_ci_high)}"
            )
            no_gain = np.isfinite(r.gain_ci_low) and r.gain_ci_low <= 0
            text += (": no better than assuming no shift." if no_gain else ".")
        else:
            text += " No task-agnostic Q (no-reference IQA or zero-shot score) was given."
        lines.append(text + _logit_words(r))
    return "\n".join(lines)


def _clean_words(r) -> str:
    """The best own estimator's error on the clean images held out (fitted on the corrupted
    groups only): the nearly clean sets leaving one corruption out never tests."""
    err = getattr(r, "best_own_clean_error_pts", np.nan)
    if not np.isfinite(err):
        return ""
    return f" On the clean images held out (fitted on the corrupted groups only) it reads {err:+.1f} points."


def _logit_words(r, ranked: bool = True) -> str:
    """The estimators from the kept logits (COT, MaNo, nuclear norm, ALine) and, where the
    evidence allows a ranking, the best of them; nothing when no logits were kept."""
    methods = getattr(r, "logit_methods", None)
    if not isinstance(methods, str) or not methods:
        return ""
    if not ranked:
        listed = ", ".join(sorted(methods.split(", "), key=str.lower))  # not in the order of their errors
        return f" Its kept logits add {listed}: in the table, not ranked here either."
    mixed = getattr(r, "best_logit_pooled_mae_pts", np.nan)
    mixed_words = f", {mixed:.1f} on each corruption's severities pooled" if np.isfinite(mixed) else ""
    clean = getattr(r, "best_logit_clean_error_pts", np.nan)
    clean_words = (f"; on the clean images held out {clean:+.1f}" if np.isfinite(clean) else
                   "; not checked on the clean images held out (defined with them as its in-distribution data)"
                   if r.best_logit in {LOGIT_LABELS[m] for m in CLEAN_CHECK_EXCLUDED} else "")
    return (f" From its kept logits ({methods}): best {r.best_logit}, {r.best_logit_mae_pts:.1f} points "
            f"(95% CI {r.best_logit_ci}){mixed_words}{clean_words}.")
