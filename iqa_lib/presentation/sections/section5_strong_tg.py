"""Section 5 of the paper: strong task-guided Q, a classifier's own confidence (Tables 2 and 4;
Figures 5, 14-16).

What ``notebooks/section5_strong_tg.ipynb`` runs cell by cell; :func:`build` runs it in one call.
"""

from __future__ import annotations

import pandas as pd

from iqa_lib.analysis.inference import (
    NOT_TESTED,
    Comparison,
    Verdict,
    comparison_verdict,
    threshold_verdict,
)
from iqa_lib.presentation import plots, tables
from iqa_lib.presentation.sections.base import (
    TASK_QS,
    Claim,
    Context,
    Section,
    caution,
    first_three,
    model_file,
    new_section,
    qs_text,
    ranking_table,
)
from iqa_lib.presentation.sections.evidence import (
    GOOD_AUC,
    as_float,
    auc_estimates,
    member_rows,
    paired_comparison,
    untested,
)


def strong_tg_pairs(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Every (Q from classifier A, M from classifier B) row of the analysis, for Tables 2 and 4."""
    if sec.unavailable:
        return None
    pairs = ctx.read("pairs")
    return pairs[pairs["m_model"].isin(ctx.task_models) & pairs["q_model"].isin(ctx.scorers_of("classifier"))]


TASK_MODEL_COLUMNS = {  # summary.json key -> column of the task models' table
    "clean_top1": "clean top-1",
    "corrupted_top1": "corrupted top-1",
    "mce": "mCE",
    "relative_mce": "relative mCE",
    "ece_clean": "ECE clean",
    "ece_corrupted": "ECE corrupted",
}


def task_models_table(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Each task model's accuracy, ImageNet-C mCE and calibration, as its correctness stage wrote them.

    What every robustness paper quotes, to place the models before their confidence is used
    as Q; read from ``results/correctness/<model>/summary.json``, not recomputed.
    """
    if sec.unavailable:
        return None
    rows = []
    for model in ctx.task_models:
        summary = ctx.correctness_summary(model)
        row = {"task_model": model}
        for key, column in TASK_MODEL_COLUMNS.items():
            entry = summary.get(key) or {}
            row[column] = entry.get("value")
            row[f"n ({column})"] = entry.get("n")
        rows.append(row)
    table = pd.DataFrame(rows)
    title = ("The task models: top-1 accuracy, ImageNet-C mCE (AlexNet-normalised) and ECE of Q_p "
             "(from results/correctness)")
    shown = table[["task_model", *TASK_MODEL_COLUMNS.values()]]
    text = f"### {title}\n\n" + shown.to_markdown(index=False, floatfmt=".3f", missingval="") + "\n"
    return ctx.write_table(sec, "task_models", table, title, markdown=text)


def table2_strong_tg(ctx: Context, sec: Section, pairs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Table 2: Q and M from the same classifier."""
    if pairs is None:
        return None
    return ctx.write_table(sec, "table2_strong_tg_same_model", ctx.with_significance(tables.table2(pairs, ctx.paper_names), "m_model", "q_model"),
                           tables.TABLE_TITLES[2])


def table4_strong_tg(ctx: Context, sec: Section, pairs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Table 4: Q from classifier A, M from classifier B, every pair."""
    if pairs is None:
        return None
    t4 = ctx.write_table(sec, "table4_strong_tg_pairs", ctx.with_significance(tables.table4(pairs, ctx.paper_names), "m_model", "q_model"),
                         tables.TABLE_TITLES[4])
    main = t4[t4["m_model"] == ctx.main_model]
    sec.ranking = ranking_table(main, main["q_model"] + "." + main["q"])
    return t4


def figure5(ctx: Context, sec: Section, means: pd.DataFrame | None):
    """Figure 5: the main task model's accuracy against another classifier's Q_l."""
    others = [c for c in ctx.scorers_of("classifier") if c != ctx.main_model]
    if means is None or not others or not ctx.groupwise_note(sec):
        return None
    q_model = next((c for c in others if ctx.paper_names.get(c) == "swin_b"), others[0])
    fig = plots.scatter_accuracy_vs_q(means, ctx.main_model, q_model, "q_l").figure
    return ctx.save(sec, f"fig05_{ctx.main_model}_vs_{q_model}_q_l", fig)


def figure14_title(model: str, sources: list[str]) -> str:
    """What Figures 14-16 plot: other classifiers' confidence, or the model's own when it is alone."""
    if sources == [model]:
        return f"Accuracy of {model} vs its own confidence ({qs_text()}): no other classifier is configured"
    whose = "the other classifier" if len(sources) == 1 else "the other classifiers"
    return f"Accuracy of {model} vs the confidence ({qs_text()}) of {whose}: {', '.join(sources)}"


def figures14_16(ctx: Context, sec: Section, means: pd.DataFrame | None) -> list:
    """Figures 14-16: each task model's accuracy against the other classifiers' Q_h, Q_l, Q_p."""
    if means is None or not ctx.groupwise_note(sec):
        return []
    classifiers = ctx.scorers_of("classifier")
    figures = []
    for i, model in first_three(ctx.task_models):
        sources = [c for c in classifiers if c != model] or [model]
        panels = [(c, q) for q in TASK_QS for c in sources]
        fig = plots.scatter_grid(means, model, panels, ncols=len(sources), title=figure14_title(model, sources))
        figures.append(ctx.save(sec, model_file(14, i, model), fig))
    return figures


OWN_BEATS_OTHER = ("Confidence from the same model beats confidence from any other model point-wise (Table 4: "
                   "0.826 vs 0.791 for ConvNeXt-B, 0.850 vs 0.801 for ResNet-34, 0.807 vs 0.791 for Swin-B; "
                   "verdict: the model's best own Q significantly above the best other model's Q, for every model).")


def _own_confidence_claim(t2: pd.DataFrame) -> Claim:
    """Every same-model AUC interval at least :data:`GOOD_AUC`."""
    own_label = lambda r: f"{r['m_model']} {r['q']}"  # noqa: E731
    return Claim.judged(
        f"A classifier's own confidence predicts its correctness: Table 2 AUC 0.73-0.85 "
        f"(verdict: every same-model AUC interval at least {GOOD_AUC}).",
        threshold_verdict(auc_estimates(t2, own_label), GOOD_AUC, "at_least", "AUC"))


def _q_p_comparisons(ctx: Context, t2: pd.DataFrame) -> list[Comparison]:
    """Q_p against Q_h and Q_l of the same model, by the paired test within Table 2."""
    pairs = ctx.pairs_within(member_rows(t2, "m_model", "q_model"))
    comparisons = []
    for model, rows in t2.groupby("m_model", sort=False):
        auc = dict(zip(rows["q"], rows["auc"], strict=True))
        if "q_p" not in auc:
            continue
        for other in ("q_h", "q_l"):
            if other in auc:
                label = f"{model}: q_p vs {other}"
                comparisons.append(paired_comparison(pairs, model, (model, "q_p"), (model, other), label)
                                   or untested(label, as_float(auc["q_p"]), as_float(auc[other])))
    return comparisons


def _q_p_best_claim(ctx: Context, t2: pd.DataFrame) -> Claim:
    comparisons = _q_p_comparisons(ctx, t2)
    return Claim.judged(
        "Q_p (max probability) is the best of Q_p, Q_h, Q_l for the same model (Table 2, all three models; "
        "verdict: Q_p significantly above Q_h and Q_l for every model, by the paired test).",
        comparison_verdict(comparisons) if comparisons else Verdict(NOT_TESTED, "no Q_p", "none"))


def _own_vs_other_comparisons(ctx: Context, t4: pd.DataFrame) -> list[Comparison]:
    """Per task model, its best own Q against the best Q of another model, by the paired test within Table 4."""
    pairs = ctx.pairs_within(member_rows(t4, "m_model", "q_model"))
    comparisons = []
    for model, rows in t4.dropna(subset=["auc"]).groupby("m_model", sort=False):
        own, others = rows[rows["same_model"]], rows[~rows["same_model"]]
        if own.empty or others.empty:
            continue
        a, b = own.loc[own["auc"].idxmax()], others.loc[others["auc"].idxmax()]
        label = f"{model}: own {a['q']} vs {b['q_model']} {b['q']}"
        comparisons.append(paired_comparison(pairs, model, (a["q_model"], a["q"]), (b["q_model"], b["q"]), label)
                           or untested(label, as_float(a["auc"]), as_float(b["auc"])))
    return comparisons


def _own_beats_other_claim(ctx: Context, t4: pd.DataFrame | None) -> Claim:
    other = t4[~t4["same_model"]] if t4 is not None else pd.DataFrame()
    if other.empty or other["auc"].isna().all():
        return Claim(OWN_BEATS_OTHER, NOT_TESTED, "only one classifier is configured")
    comparisons = _own_vs_other_comparisons(ctx, t4)
    return Claim.judged(OWN_BEATS_OTHER, comparison_verdict(comparisons) if comparisons
                        else Verdict(NOT_TESTED, "no model with both own and other Q", "none"))


def claims_section5(ctx: Context, sec: Section, t2: pd.DataFrame | None, t4: pd.DataFrame | None) -> list[Claim]:
    """Section 5's claims: own confidence predicts correctness; Q_p is best; own beats another's."""
    if t2 is None or t2.empty:
        return sec.claims
    claims = [_own_confidence_claim(t2), _q_p_best_claim(ctx, t2), _own_beats_other_claim(ctx, t4)]
    sec.claims = claims
    caution(claims[0], t2, "small_n_auc")
    caution(claims[1], t2, "small_n_auc")
    caution(claims[2], t4, "small_n_auc")
    return claims


def build(ctx: Context) -> Section:
    """Section 5: Q from a classifier's confidence (Tables 2 and 4; Figures 5, 14-16)."""
    sec = new_section(ctx, "section5_strong_tg")
    task_models_table(ctx, sec)
    pairs = strong_tg_pairs(ctx, sec)
    t2 = table2_strong_tg(ctx, sec, pairs)
    t4 = table4_strong_tg(ctx, sec, pairs)
    means = ctx.group_means(sec)
    figure5(ctx, sec, means)
    figures14_16(ctx, sec, means)
    claims_section5(ctx, sec, t2, t4)
    return ctx.finish(sec)


