"""Appendix G of the paper: content held fixed, per label and per image ID (Figure 20).

What ``notebooks/appendix_g_content.ipynb`` runs cell by cell; :func:`build` runs it in one call.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from iqa_lib.analysis.inference import NOT_TESTED, Verdict, mean_interval, threshold_verdict
from iqa_lib.paper import paper_text_values
from iqa_lib.presentation import plots
from iqa_lib.presentation.sections.base import (
    Claim,
    Context,
    Section,
    caution,
    new_section,
    ranking_table,
)
from iqa_lib.presentation.sections.evidence import (
    NEAR_CHANCE_AUC,
    as_float,
    mean_estimates,
    metric_label,
)


def _content_summary(table: pd.DataFrame, level: str) -> pd.DataFrame:
    cols = ["task_model", "scorer", "q", "kind", "n_groups", "n_groups_scored", "n_groups_constant_m",
            "mean_auc", "sd_auc", "mean_ce", "sd_ce"]
    return table[[c for c in cols if c in table.columns]].assign(level=level)


def content_tables(ctx: Context, sec: Section, per_image: pd.DataFrame, per_label: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Mean AUC and CE of the logistic model fitted per image ID and per label (5-fold CV)."""
    out = {}
    for key, table, level in (("content_per_image", per_image, "image_id"), ("content_per_label", per_label, "label")):
        table = table[table["task_model"].isin(ctx.task_models)]
        out[key] = ctx.write_table(sec, key, _content_summary(table, level),
                                   f"5-fold CV logistic regression per {level}: mean AUC and CE (sd across groups)")
    ref = paper_text_values()["per_label_nr_iqa"]
    sec.markdown["paper"] = (
        f"Paper (section 4.2, no-reference IQA, per label): mAUC {ref['mauc']} (sd {ref['mauc_sd']}), "
        f"mCE {ref['mce']} (sd {ref['mce_sd']})."
    )
    for level, table in (("per_label", per_label), ("per_image", per_image)):  # per label where it was fitted
        main = table[(table["task_model"] == ctx.main_model) & (table["scorer"] != ctx.main_model)]
        if main["mean_auc"].notna().any():
            labels = [f"{level}:{metric_label(s, q)}" for s, q in zip(main["scorer"], main["q"], strict=True)]
            sec.ranking = ranking_table(main, labels, "mean_auc")
            break
    return out


def figure20(ctx: Context, sec: Section, per_image: pd.DataFrame, per_label: pd.DataFrame) -> list:
    """Figure 20, one per task model: mean AUC per metric, (a) per image ID and (b) per label."""
    figures = []
    for model in ctx.task_models:
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * max(len(per_image["scorer"].unique()) * 2, 6) + 1.5))
        plots.bar_mean_auc(per_image, model, ax=axes[0], title="(a) per image ID (clean + corrupted variants)")
        plots.bar_mean_auc(per_label, model, ax=axes[1], title="(b) per label")
        fig.suptitle(f"Content held fixed: mean 5-fold CV AUC of each Q for the correctness of {model}")
        fig.tight_layout()
        figures.append(ctx.save(sec, f"fig20_{model}", fig))
    return figures


def _confidence_beside(table: pd.DataFrame, models: list[str], unit: str) -> str | None:
    """The task models' own (and other classifiers') confidence on the same control: numbers beside
    a claim about quality metrics, which the claim is not about."""
    rows = table[table["task_model"].isin(models) & (table["kind"] == "classifier")].dropna(subset=["mean_auc"])
    if rows.empty:
        return None
    parts = []
    for r in rows.itertuples(index=False):
        whose = "own" if r.scorer == r.task_model else r.scorer
        low, high = mean_interval(as_float(r.mean_auc), as_float(r.sd_auc), as_float(r.n_groups_scored))
        interval = f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) else ""
        parts.append(f"{r.task_model} {whose} {r.q} {r.mean_auc:.3f}{interval}")
    return f"classifier confidence, mean AUC per {unit}: " + "; ".join(parts[:9]) + (
        f"; and {len(parts) - 9} more" if len(parts) > 9 else "") + "."


def claims_appendix_g(ctx: Context, sec: Section, per_label: pd.DataFrame,
                      per_image: pd.DataFrame | None = None) -> list[Claim]:
    """Appendix G's claims: with the label, or the image, held fixed, no-reference IQA stays weak.

    The task models' confidence on the same control is shown beside each claim, as the
    comparison it is: the claims are about quality metrics.
    """
    ref = paper_text_values()["per_label_nr_iqa"]
    label = lambda r: f"{r['scorer']} for {r['task_model']}"  # noqa: E731
    claims = []
    for level, table, unit, text in (
        ("label", per_label, "labels",
         f"With the label held fixed, no-reference IQA stays near chance: mean AUC {ref['mauc']} "
         f"(sd {ref['mauc_sd']}) over {ref['labels']} labels (verdict: every per-label mean AUC interval "
         f"below {NEAR_CHANCE_AUC})."),
        ("image", per_image, "image IDs",
         "With the image held fixed (its clean and corrupted variants, Figure 20a), no-reference IQA stays a "
         f"weak predictor (verdict: every per-image-ID mean AUC interval below {NEAR_CHANCE_AUC})."),
    ):
        if table is None:
            continue
        rows = table[table["task_model"].isin(ctx.task_models) & (table["kind"] == "nr_iqa")]
        rows = rows.dropna(subset=["mean_auc"])
        estimates = mean_estimates(rows, label, unit)
        verdict = (threshold_verdict(estimates, NEAR_CHANCE_AUC, "below", "mean AUC") if estimates else
                   Verdict(NOT_TESTED, f"no no-reference IQA scorer with a per-{level} fit", "none"))
        claim = Claim.judged(text, verdict, comparison=_confidence_beside(table, ctx.task_models, unit))
        claims.append(caution(claim, rows, "small_n"))
    sec.claims = claims
    return claims


def build(ctx: Context) -> Section:
    """Appendix G: content control, per label and per image ID (Figure 20)."""
    sec = new_section(ctx, "appendix_g_content")
    per_image, per_label = ctx.read("per_image"), ctx.read("per_label")
    content_tables(ctx, sec, per_image, per_label)
    figure20(ctx, sec, per_image, per_label)
    claims_appendix_g(ctx, sec, per_label, per_image)
    return ctx.finish(sec)


