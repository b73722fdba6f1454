"""Section 6.3 / Appendix H of the paper: mild-corruption mixtures (Figures 21-22).

What ``notebooks/section6_3_mixtures.ipynb`` runs cell by cell; :func:`build` runs it in one call.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from iqa_lib.analysis.inference import (
    NOT_TESTED,
    Comparison,
    Estimate,
    Verdict,
    comparison_verdict,
    threshold_verdict,
)
from iqa_lib.paper import paper_text_values
from iqa_lib.presentation import plots, tables
from iqa_lib.presentation.numbers import count_text
from iqa_lib.presentation.sections.base import (
    Claim,
    Context,
    Section,
    caution,
    new_section,
    ranking_table,
)
from iqa_lib.presentation.sections.evidence import GOOD_AUC, as_float, metric_label
from iqa_lib.stats.hanley_mcneil import hanley_mcneil_interval, hanley_mcneil_se


def mixtures_table(ctx: Context, sec: Section, summary: pd.DataFrame | None) -> pd.DataFrame | None:
    """Mean point-wise AUC over the mixtures, per (task model, metric)."""
    if summary is None:
        return None
    summary = ctx.write_table(sec, "mixtures_mean_auc", summary[summary["task_model"].isin(ctx.task_models)],
                              "Mean point-wise AUC over the mixtures p_c = 1%..20%")
    ref = paper_text_values()["mixtures_mauc"]
    sec.markdown["paper"] = f"Paper: mAUC {ref['zsclip_q_l']} for ZSCLIP-IQA Q_l, {ref['clip_iqa']} for CLIP-IQA (the next best)."
    main = summary[summary["task_model"] == ctx.main_model]
    sec.ranking = ranking_table(main, [metric_label(s, q) for s, q in zip(main["scorer"], main["q"], strict=True)], "mean_auc")
    return summary


def _mixture_metrics(summary: pd.DataFrame) -> list[tuple[str, str]]:
    return [(s, q) for s, q in summary[["scorer", "q"]].drop_duplicates().itertuples(index=False)]


def figure21(ctx: Context, sec: Section, histogram: pd.DataFrame | None, summary: pd.DataFrame | None):
    """Figure 21: the distribution of each Q per mixture, coloured by the corrupted fraction."""
    if histogram is None or summary is None:
        return None
    fig = plots.mixture_distributions(histogram, _mixture_metrics(summary))
    return ctx.save(sec, "fig21_mixture_distributions", fig)


def figure22(ctx: Context, sec: Section, auc: pd.DataFrame | None, summary: pd.DataFrame | None):
    """Figure 22: point-wise AUC against the corrupted fraction, per task model."""
    if auc is None or summary is None:
        return None
    main = auc[auc["task_model"] == ctx.main_model].assign(metric=lambda d: d["scorer"] + "." + d["q"])
    ctx.plot_data(sec, "auc_vs_fraction", main.pivot_table(index="p_c", columns="metric", values="auc").reset_index())
    return ctx.save(sec, "fig22_auc_vs_fraction", plots.auc_vs_fraction(auc, ctx.task_models, _mixture_metrics(summary)))


QUALITY_KINDS = ("nr_iqa", "zero_shot")  # what the paper's quality claims are about (not a task model's confidence)


def _mixture_intervals(ctx: Context, summary: pd.DataFrame) -> pd.DataFrame:
    """Per (task model, scorer, q): the mean over mixtures of each mixture's Hanley-McNeil interval
    and SE (one row per image ID in a mixture, so its rows are independent images). The mixtures
    share most of their images, so the mean AUC is about as uncertain as one mixture's AUC."""
    keys = ["task_model", "scorer", "q"]
    if not (ctx.analysis_dir / "mixtures_auc.csv").is_file():
        return summary.assign(auc_ci_low=float("nan"), auc_ci_high=float("nan"), auc_se=float("nan"))
    auc = ctx.read("mixtures_auc")
    low, high = hanley_mcneil_interval(auc["auc"], auc["n_test_pos_images"], auc["n_test_neg_images"])
    se = hanley_mcneil_se(auc["auc"], auc["n_test_pos_images"], auc["n_test_neg_images"])
    per = auc[keys].assign(auc_ci_low=low, auc_ci_high=high, auc_se=se).groupby(keys, sort=False).mean()
    return summary.merge(per.reset_index(), on=keys, how="left")


def _mixture_estimates(rows: pd.DataFrame) -> list[Estimate]:
    return [Estimate(f"{metric_label(r['scorer'], r['q'])} for {r['task_model']}", as_float(r["mean_auc"]),
                     as_float(r["auc_ci_low"]), as_float(r["auc_ci_high"]),
                     f"{int(r['n_mixtures'])} mixtures, at least {count_text(r.get('n_test_images'))} test images each",
                     tables.is_flagged(r.get("small_n")))
            for _, r in rows.iterrows()]


def _weak_predictors_claim(rows: pd.DataFrame, ref: dict) -> Claim:
    """Every quality metric's mean AUC interval below :data:`GOOD_AUC`; the task models' own
    confidence judged apart and shown beside."""
    quality = rows[rows["kind"].isin(QUALITY_KINDS)]
    confidence = rows[~rows["kind"].isin(QUALITY_KINDS)]
    beside = None
    if not confidence.empty:
        beside = "classifier confidence (judged apart: " + "; ".join(
            e.text("mean AUC") for e in _mixture_estimates(confidence)[:9]) + ")."
    text = (f"On mild-corruption mixtures every quality metric is a weak predictor: the best mean AUC is "
            f"{ref['zsclip_q_l']} (verdict: every no-reference and ZSCLIP-IQA mean AUC interval below {GOOD_AUC}).")
    if quality.empty:
        claim = Claim(text, NOT_TESTED, "no quality metric (only task-model confidence)", comparison=beside)
    else:
        claim = Claim.judged(text, threshold_verdict(_mixture_estimates(quality), GOOD_AUC, "below", "mean AUC"),
                             comparison=beside)
    return caution(claim, quality, "small_n")


def _unpaired(z: Any, c: Any) -> Comparison:
    """ZSCLIP-IQA's Q_l (row ``z``) against CLIP-IQA (row ``c``): an unpaired z-test on Hanley-McNeil SEs."""
    se = math.hypot(as_float(z.auc_se), as_float(c.auc_se))
    diff = as_float(z.mean_auc) - as_float(c.mean_auc)
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else float("nan")
    return Comparison(
        f"{z.task_model}: {z.scorer} q_l vs {c.scorer}", as_float(z.mean_auc), as_float(c.mean_auc), p,
        not (tables.is_flagged(z.small_n) or tables.is_flagged(c.small_n)),
        f"{int(z.n_mixtures)} mixtures", "unpaired z on Hanley-McNeil SEs, conservative")


def _zsclip_beats_clip_iqa_claim(ctx: Context, rows: pd.DataFrame, ref: dict) -> Claim:
    names = rows["scorer"].map(ctx.paper_names)
    zs = rows[(names == "zsclip") & (rows["q"] == "q_l")]
    clip = rows[names == "CLIP-IQA"]
    comparisons = [_unpaired(z, c) for z in zs.itertuples(index=False)
                   for c in clip[clip["task_model"] == z.task_model].itertuples(index=False)]
    claim = Claim.judged(
        f"ZSCLIP-IQA's Q_l beats CLIP-IQA on the mixtures ({ref['zsclip_q_l']} vs {ref['clip_iqa']}; verdict: "
        "significantly above for every task model).",
        comparison_verdict(comparisons, "mean AUC") if comparisons else
        Verdict(NOT_TESTED, "ZSCLIP-IQA and CLIP-IQA are not both configured", "ZSCLIP-IQA and CLIP-IQA are not both configured"))
    return caution(claim, pd.concat([zs, clip]), "small_n")


def claims_mixtures(ctx: Context, sec: Section, summary: pd.DataFrame | None) -> list[Claim]:
    """Section 6.3's claims: mild corruption is hard to detect; ZSCLIP-IQA Q_l beats CLIP-IQA.

    The claims are about quality metrics (no-reference IQA and ZSCLIP-IQA): the task models'
    own confidence is judged apart and shown beside, never counted among the metrics.
    """
    if summary is None or summary["mean_auc"].isna().all():
        return sec.claims
    ref = paper_text_values()["mixtures_mauc"]
    rows = _mixture_intervals(ctx, summary.dropna(subset=["mean_auc"]))
    sec.claims = [_weak_predictors_claim(rows, ref), _zsclip_beats_clip_iqa_claim(ctx, rows, ref)]
    return sec.claims


def build(ctx: Context) -> Section:
    """Section 6.3 / Appendix H: mild-corruption mixtures (Figures 21-22)."""
    sec = new_section(ctx, "section6_3_mixtures")
    summary = mixtures_table(ctx, sec, ctx.load(sec, "mixtures_summary"))
    figure21(ctx, sec, ctx.load(sec, "mixtures_histogram"), summary)
    figure22(ctx, sec, ctx.load(sec, "mixtures_auc"), summary)
    claims_mixtures(ctx, sec, summary)
    return ctx.finish(sec)


