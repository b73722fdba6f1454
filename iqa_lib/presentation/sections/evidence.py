"""Evidence for the sections' verdicts: our numbers as the estimates and comparisons the rules judge.

The rules themselves (when a claim holds, fails or is inconclusive) are in
:mod:`iqa_lib.analysis.inference`; here each table row becomes an
:class:`~iqa_lib.analysis.inference.Estimate` or a
:class:`~iqa_lib.analysis.inference.Comparison` with its interval and its n in words.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from iqa_lib.analysis.inference import (
    NOT_TESTED,
    Comparison,
    Estimate,
    Verdict,
    mean_interval,
    threshold_verdict,
)
from iqa_lib.presentation import tables
from iqa_lib.presentation.numbers import count_text

# thresholds of the verdicts, stated in each claim's text
NEAR_CHANCE_AUC = 0.65
WEAK_SRCC = 0.5
STRONG_SRCC = 0.7
GOOD_AUC = 0.7


def as_float(value: Any) -> float:
    """A table cell as a float; NaN where it is missing or not a number (an interval then never decides)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def auc_estimates(rows: pd.DataFrame, label: Any) -> list[Estimate]:
    """Each row's AUC with its interval and test images (``label``: row -> words)."""
    return [Estimate(label(r), as_float(r.get("auc")), as_float(r.get("auc_ci_low")), as_float(r.get("auc_ci_high")),
                     f"{count_text(r.get('n_test_images'))} test images", tables.is_flagged(r.get("small_n_auc")))
            for _, r in rows.iterrows()]


def srcc_estimates(rows: pd.DataFrame, label: Any) -> list[Estimate]:
    """Each row's |SRCC| over groups with its interval, number of groups and images in the smallest group."""
    return [Estimate(label(r), as_float(r.get("srcc")), as_float(r.get("srcc_ci_low")), as_float(r.get("srcc_ci_high")),
                     tables.group_count_text(r.get("n_groups"), r.get("min_group_images"), "groups"),
                     tables.is_flagged(r.get("small_n_corr")))
            for _, r in rows.iterrows() if pd.notna(r.get("srcc"))]


def srcc_verdict(estimates: list[Estimate], threshold: float, direction: str) -> Verdict:
    """A group-wise claim's verdict: every |SRCC| interval ``direction`` ("below", "at_least")
    ``threshold``; not tested where too few groups gave no correlation."""
    if not estimates:
        return Verdict(NOT_TESTED, "too few groups for a correlation", "no group-wise numbers")
    return threshold_verdict(estimates, threshold, direction, "|SRCC|")


def mean_estimates(rows: pd.DataFrame, label: Any, unit: str) -> list[Estimate]:
    """Cross-validated means (per label, per image ID) with a t interval over the scored groups."""
    out = []
    for _, r in rows.iterrows():
        n = as_float(r.get("n_groups_scored"))
        low, high = mean_interval(as_float(r.get("mean_auc")), as_float(r.get("sd_auc")), n)
        out.append(Estimate(label(r), as_float(r.get("mean_auc")), low, high, f"{count_text(n)} {unit}",
                            tables.is_flagged(r.get("small_n"))))
    return out


def paired_comparison(pairs: pd.DataFrame | None, model: str, better: tuple[str, str], worse: tuple[str, str],
                      label: str) -> Comparison | None:
    """The paired AUC test of ``better`` against ``worse`` for ``model``.

    ``pairs``: :meth:`~iqa_lib.presentation.sections.base.Context.pairs_within`.
    """
    if pairs is None or pairs.empty:
        return None
    a = list(zip(pairs["scorer_a"], pairs["q_a"], strict=True))
    b = list(zip(pairs["scorer_b"], pairs["q_b"], strict=True))
    for i, (pa, pb) in enumerate(zip(a, b, strict=True)):
        if pairs["task_model"].iloc[i] != model or {pa, pb} != {better, worse}:
            continue
        r = pairs.iloc[i]
        hi, lo = (r["auc_a"], r["auc_b"]) if pa == better else (r["auc_b"], r["auc_a"])
        return Comparison(label, as_float(hi), as_float(lo), as_float(r.get("delong_p_holm_table")),
                          tables.is_flagged(r.get("auc_test_valid")),
                          f"{count_text(r.get('n_test_images'))} test images", "clustered DeLong, Holm")
    return None


def untested(label: str, better: float, worse: float) -> Comparison:
    """A comparison with no paired test (none was computed): it can never decide."""
    return Comparison(label, better, worse, float("nan"), True, "", "paired test")


def member_rows(frame: pd.DataFrame, m_col: str, scorer_col: str) -> pd.DataFrame:
    """A table's (task_model, scorer, q) rows, whatever its columns are called, for the paired tests."""
    return frame.rename(columns={m_col: "task_model", scorer_col: "scorer"})[["task_model", "scorer", "q"]]


def metric_label(scorer: str, q: str) -> str:
    """``brisque`` or ``resnet34.q_p``: a metric as the rankings and the evidence name it."""
    return scorer if q == "q" else f"{scorer}.{q}"

