"""Section 6 of the paper: weak task-guided Q, ZSCLIP-IQA (Table 3; Figures 7, 17-19).

What ``notebooks/section6_zsclip.ipynb`` runs cell by cell; :func:`build` runs it in one call.
"""

from __future__ import annotations

import pandas as pd

from iqa_lib.analysis.inference import NOT_TESTED, comparison_verdict
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
    STRONG_SRCC,
    as_float,
    paired_comparison,
    srcc_estimates,
    srcc_verdict,
    untested,
)


def table3_zsclip(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Table 3: ZSCLIP-IQA's Q_p, Q_h, Q_l against every task model."""
    if sec.unavailable:
        return None
    summary = ctx.summary_of("zero_shot")
    t3 = ctx.write_table(sec, "table3_zsclip", ctx.with_significance(tables.table3(summary, ctx.paper_names)), tables.TABLE_TITLES[3])
    main = t3[t3["task_model"] == ctx.main_model]
    sec.ranking = ranking_table(main, main["scorer"] + "." + main["q"])
    return t3


def figure7(ctx: Context, sec: Section, means: pd.DataFrame | None):
    """Figure 7: the main task model's accuracy against ZSCLIP-IQA's Q_l."""
    if means is None or not ctx.groupwise_note(sec):
        return None
    z = ctx.scorers_of("zero_shot")[0]
    fig = plots.scatter_accuracy_vs_q(means, ctx.main_model, z, "q_l").figure
    return ctx.save(sec, f"fig07_{ctx.main_model}_vs_{z}_q_l", fig)


def figures17_19(ctx: Context, sec: Section, means: pd.DataFrame | None) -> list:
    """Figures 17-19: each task model's accuracy against ZSCLIP-IQA's Q_h, Q_l, Q_p."""
    if means is None or not ctx.groupwise_note(sec):
        return []
    z = ctx.scorers_of("zero_shot")[0]
    return [
        ctx.save(sec, model_file(17, i, model), plots.scatter_grid(
            means, model, [(z, q) for q in TASK_QS], title=f"Accuracy of {model} vs ZSCLIP-IQA ({z}): {qs_text()}"))
        for i, model in first_three(ctx.task_models)
    ]


def claims_section6(ctx: Context, sec: Section, t3: pd.DataFrame | None) -> list[Claim]:
    """Section 6's claims: ZSCLIP-IQA's Q_l beats no-reference IQA; it tracks group accuracy."""
    if t3 is None or t3.empty:
        return sec.claims
    summary = ctx.read("summary")
    nr = summary[(summary["kind"] == "nr_iqa") & summary["task_model"].isin(t3["task_model"])]
    q_l = t3[t3["q"] == "q_l"].dropna(subset=["auc"])
    text = ("ZSCLIP-IQA's Q_l predicts correctness point-wise better than any no-reference IQA metric "
            "(Tables 1 and 3: AUC 0.67-0.69 vs at most 0.60; verdict: Q_l significantly above every "
            "no-reference metric, by the paired test, for every task model).")
    if nr.empty or q_l.empty:
        first = Claim(text, NOT_TESTED, "no no-reference IQA scorer to compare with")
    else:
        members = pd.concat([q_l[["task_model", "scorer", "q"]], nr[["task_model", "scorer", "q"]]])
        pairs = ctx.pairs_within(members)
        comparisons = []
        for r in q_l.itertuples(index=False):
            for n in nr[nr["task_model"] == r.task_model].itertuples(index=False):
                label = f"{r.task_model}: {r.scorer} q_l vs {n.scorer}"
                comparisons.append(paired_comparison(pairs, r.task_model, (r.scorer, "q_l"), (n.scorer, n.q), label)
                                   or untested(label, as_float(r.auc), as_float(n.auc)))
        first = Claim.judged(text, comparison_verdict(comparisons))
    srcc = srcc_estimates(t3, lambda r: f"{r['scorer']} {r['q']} for {r['task_model']}")
    sec.claims = [
        first,
        Claim.judged(f"Group-wise, ZSCLIP-IQA tracks accuracy closely: |SRCC| 0.74-0.96 in Table 3 "
                     f"(verdict: every |SRCC| interval at least {STRONG_SRCC}).",
                     srcc_verdict(srcc, STRONG_SRCC, "at_least")),
    ]
    caution(sec.claims[0], t3, "small_n_auc")
    caution(sec.claims[1], t3, "small_n_corr")
    return sec.claims


def build(ctx: Context) -> Section:
    """Section 6: ZSCLIP-IQA (Table 3; Figures 7, 17-19)."""
    sec = new_section(ctx, "section6_zsclip")
    t3 = table3_zsclip(ctx, sec)
    means = ctx.group_means(sec)
    figure7(ctx, sec, means)
    figures17_19(ctx, sec, means)
    claims_section6(ctx, sec, t3)
    return ctx.finish(sec)


