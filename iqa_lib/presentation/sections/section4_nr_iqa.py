"""Section 4 of the paper: no-reference IQA as a predictor of correctness (Table 1; Figures 3, 11-13).

What ``notebooks/section4_nr_iqa.ipynb`` runs cell by cell; :func:`build` runs it in one call.
"""

from __future__ import annotations

import pandas as pd

from iqa_lib.analysis.inference import threshold_verdict
from iqa_lib.presentation import plots, tables
from iqa_lib.presentation.sections.base import (
    Claim,
    Context,
    Section,
    caution,
    first_three,
    model_file,
    new_section,
    ranking_table,
)
from iqa_lib.presentation.sections.evidence import (
    NEAR_CHANCE_AUC,
    WEAK_SRCC,
    auc_estimates,
    srcc_estimates,
    srcc_verdict,
)


def table1_nr_iqa(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Table 1: every no-reference IQA scorer against every task model."""
    if sec.unavailable:
        return None
    summary = ctx.summary_of("nr_iqa")
    t1 = ctx.write_table(sec, "table1_nr_iqa", ctx.with_significance(tables.table1(summary, ctx.paper_names)), tables.TABLE_TITLES[1])
    main = t1[t1["task_model"] == ctx.main_model]
    sec.ranking = ranking_table(main, main["scorer"])
    return t1


def _main_nr(ctx: Context) -> str:
    nr = ctx.scorers_of("nr_iqa")
    return next((n for n in nr if ctx.paper_names.get(n) == "CLIP-IQA"), nr[0])


def figure3(ctx: Context, sec: Section, means: pd.DataFrame | None):
    """Figure 3: the main task model's accuracy against the main no-reference metric."""
    if means is None or not ctx.groupwise_note(sec):
        return None
    model, nr = ctx.main_model, _main_nr(ctx)
    ctx.plot_data(sec, "accuracy_vs_nr_iqa", plots.group_points(means, model, nr, "q"))
    fig = plots.scatter_accuracy_vs_q(means, model, nr, "q").figure
    return ctx.save(sec, f"fig03_{model}_vs_{nr}", fig)


def figures11_13(ctx: Context, sec: Section, means: pd.DataFrame | None) -> list:
    """Figures 11-13: each task model's accuracy against every no-reference metric."""
    if means is None or not ctx.groupwise_note(sec):
        return []
    nr = ctx.scorers_of("nr_iqa")
    return [
        ctx.save(sec, model_file(11, i, model), plots.scatter_grid(
            means, model, [(s, "q") for s in nr],
            title=f"Accuracy of {model} vs mean no-reference IQA ({', '.join(nr)}), one point per group"))
        for i, model in first_three(ctx.task_models)
    ]


def claims_section4(ctx: Context, sec: Section, t1: pd.DataFrame | None) -> list[Claim]:
    """Section 4's claims: no-reference IQA is a poor predictor, point-wise and group-wise."""
    if t1 is None or t1.empty:
        return sec.claims
    who = lambda r: f"{r['scorer']} for {r['task_model']}"  # noqa: E731
    srcc = srcc_estimates(t1, who)
    sec.claims = [
        Claim.judged(f"No-reference IQA barely predicts whether a classifier is right: point-wise AUC 0.48-0.60 "
                     f"in Table 1 (verdict: every AUC interval below {NEAR_CHANCE_AUC}).",
                     threshold_verdict(auc_estimates(t1, who), NEAR_CHANCE_AUC, "below", "AUC")),
        Claim.judged(f"Group-wise, no-reference IQA tracks accuracy only weakly: |SRCC| at most 0.43 in Table 1 "
                     f"(verdict: every |SRCC| interval below {WEAK_SRCC}).",
                     srcc_verdict(srcc, WEAK_SRCC, "below")),
    ]
    caution(sec.claims[0], t1, "small_n_auc")
    caution(sec.claims[1], t1, "small_n_corr")
    return sec.claims


def build(ctx: Context) -> Section:
    """Section 4: no-reference IQA (Table 1; Figures 3, 11-13)."""
    sec = new_section(ctx, "section4_nr_iqa")
    t1 = table1_nr_iqa(ctx, sec)
    means = ctx.group_means(sec)
    figure3(ctx, sec, means)
    figures11_13(ctx, sec, means)
    claims_section4(ctx, sec, t1)
    return ctx.finish(sec)


