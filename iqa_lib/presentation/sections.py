"""The paper's sections: one function per table, per figure and per set of claims.

Each reads the tidy tables that ``iqa-kit analyze`` wrote (``results/analysis``)
and the validated parameters, writes Markdown/CSV tables, PNG/PDF figures and a
metrics JSON, and returns what it made (a frame, a figure, a list of claims) so a
notebook cell can show it and a reader can filter the frame and re-plot. The
section notebooks call these functions cell by cell; :data:`SECTIONS` runs a
whole section in one call (tests, scripts). A section whose scorers are not
configured writes a short explanation instead of failing, so the default
profile and the paper profile share one pipeline.

Every section writes the same metrics keys (:data:`METRIC_KEYS`), so that
``dvc metrics show`` is one row per section with a few columns.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from iqa_lib.config import Params
from iqa_lib.fileio import atomic_write_text, write_csv
from iqa_lib.paper import paper_text_values
from iqa_lib.presentation import plots, tables

PAPER_MAIN_MODEL = "convnext_base"  # the paper's Figures 3, 5 and 7 use ConvNeXt-B
TASK_QS = ("q_h", "q_l", "q_p")  # the paper's row order in Figures 14-19
# the same keys in every section's metrics file: one row per file in `dvc metrics show`, and
# with its Path column at most 12 columns even where every key has a value (the paper profile)
METRIC_KEYS = (
    "task_model",  # the main task model (M) the other keys are about
    "best_auc_metric", "best_auc", "paper_auc",  # best point-wise AUC, and the paper's for that row
    "best_srcc_metric", "best_srcc", "paper_srcc",  # best group-wise |SRCC|, and the paper's
    "claims_checked", "claims_holding",  # the paper's claims we could test, and those that hold
    "best_auc_small_n",  # the best AUC rests on too few test images for its interval to mean anything
    "status",  # complete, partial or empty; why is in NOTE.md beside the tables (kept short: one column)
)
# thresholds of the verdicts, stated in each claim's text
NEAR_CHANCE_AUC = 0.65
WEAK_SRCC = 0.5
STRONG_SRCC = 0.7
GOOD_AUC = 0.7

TITLES = {
    "section4_nr_iqa": "Section 4: no-reference IQA metrics",
    "section5_strong_tg": "Section 5: strong task-guided quality (classifier confidence)",
    "section6_zsclip": "Section 6: weak task-guided quality (ZSCLIP-IQA)",
    "appendix_g_content": "Appendix G: controlling for content (per label, per image ID)",
    "section6_3_mixtures": "Section 6.3: mild-corruption mixtures",
}


@dataclass
class Claim:
    """One claim of the paper and whether our numbers bear it out (``None``: not testable here)."""

    text: str
    holds: bool | None
    evidence: str
    small_n: str | None = None  # set when numbers behind the verdict rest on too small an n

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "not tested"}[self.holds]

    def markdown(self) -> str:
        caution = f" *Caution:* {self.small_n}" if self.small_n and self.holds is not None else ""
        flag = " (small n)" if caution else ""
        return f"- **{self.verdict}**{flag}: {self.text} *Ours:* {self.evidence}{caution}"


def caution(claim: Claim, rows: pd.DataFrame | None, column: str) -> Claim:
    """Mark ``claim`` when any of the ``rows`` behind it is flagged ``column`` (small n)."""
    if rows is not None and column in rows.columns:
        flagged = rows[column].map(tables.is_flagged)
        if flagged.any():
            claim.small_n = (f"{int(flagged.sum())} of {len(rows)} results behind this verdict rest on too few "
                             "test images or groups for their intervals to mean anything (marked † in the "
                             "table): do not report it as a finding.")
    return claim


@dataclass
class Section:
    name: str
    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    markdown: dict[str, str] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    note: str | None = None  # why the section is empty or partial, when it is
    claims: list[Claim] = field(default_factory=list)
    ranking: pd.DataFrame | None = None  # metric, auc, srcc, paper_auc, paper_srcc for the main model
    unavailable: bool = False  # its scorers or analyses are missing: nothing to draw

    @property
    def empty(self) -> bool:
        return not self.tables and not self.figures


@dataclass
class Context:
    """Everything a section needs: the parameters, the analysis tables, where to write."""

    params: Params
    analysis_dir: Path
    tables_dir: Path
    figures_dir: Path
    metrics_dir: Path
    correctness_dir: Path  # one folder per task model, written by `iqa-kit correctness`

    @cached_property
    def skipped(self) -> dict[str, str]:
        """Analyses ``iqa-kit analyze`` skipped because the data cannot support them."""
        path = self.analysis_dir / "analysis_params.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text()).get("skipped", {})
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: not readable JSON ({exc}); rerun `iqa-kit analyze`") from None

    def groupwise_note(self, section: Section) -> bool:
        """Whether the group-wise figures can be drawn; if not, say why in the section."""
        why = self.skipped.get("groupwise")
        if why:
            section.note = f"Group-wise columns and scatter plots are empty: {why}."
        return why is None

    def read(self, name: str) -> pd.DataFrame:
        path = self.analysis_dir / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `iqa-kit analyze` (or `dvc repro analyze`) first")
        try:
            return pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
            raise ValueError(f"{path}: not a readable table ({exc}); rerun `iqa-kit analyze`") from None

    def correctness(self, model: str, name: str) -> pd.DataFrame:
        """A task model's correctness table (``accuracy``, ``ce``, ``calibration``...): read, not recomputed."""
        path = self.correctness_dir / model / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run `dvc repro correctness@{model}` (or `iqa-kit correctness "
                f"--scores results/scores --model {model} --out {self.correctness_dir / model}`) first"
            )
        return pd.read_csv(path)

    def correctness_summary(self, model: str) -> dict:
        path = self.correctness_dir / model / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `dvc repro correctness@{model}` first")
        return json.loads(path.read_text())

    def group_means(self, section: Section) -> pd.DataFrame | None:
        """Mean Q per group from the analysis, with each task model's accuracy from its correctness table.

        The analysis computes the same accuracies for its correlations; a difference means one
        of the two stages ran on other scores, which is an error rather than a silent choice.
        """
        means = self.load(section, "groupwise_means")
        if means is None:
            return None
        keys = ["corruption", "severity"]
        # the configured task models' accuracy comes from their correctness tables; the
        # analysis's other rows (mean Q, accuracies of task files no section plots) stay
        is_acc = (means["measure"] == "accuracy") & means["source"].isin(self.task_models)
        rows = [means[~is_acc]]
        for model in means.loc[is_acc, "source"].unique():
            ours = means[is_acc & (means["source"] == model)]
            table = self.correctness(model, "accuracy")
            joined = ours.merge(table[[*keys, "n", "accuracy"]], on=keys, how="left", suffixes=("", "_c"))
            stale = joined["accuracy"].isna() | (joined["n_c"] != joined["n"]) | (
                (joined["accuracy"] - joined["mean"]).abs() > 1e-9)
            if stale.any():
                bad = joined.loc[stale, keys].head(3).to_dict("records")
                raise ValueError(
                    f"{self.correctness_dir / model / 'accuracy.csv'} and {self.analysis_dir / 'groupwise_means.csv'} "
                    f"disagree on {model}'s accuracy (e.g. {bad}): they were made from different scores; "
                    "rerun both (`dvc repro`)"
                )
            rows.append(ours.assign(mean=joined["accuracy"].to_numpy()))
        return pd.concat(rows, ignore_index=True)

    def with_significance(self, table: pd.DataFrame, m_col: str = "task_model", scorer_col: str = "scorer") -> pd.DataFrame:
        """The table with ``auc_vs_best`` / ``srcc_vs_best`` marks from the analysis's paired tests.

        Holm's adjustment is redone within the table (:func:`iqa_lib.analysis.paired.within_table`);
        an analysis made without the paired tests leaves the table unmarked.
        """
        from iqa_lib.analysis.paired import within_table

        if table.empty or not (self.analysis_dir / "paired_tests.csv").is_file():
            return table
        members = table.rename(columns={m_col: "task_model", scorer_col: "scorer"})[["task_model", "scorer", "q"]]
        pairs = within_table(self.read("paired_tests"), members)
        return tables.mark_vs_best(table, pairs, m_col, scorer_col)

    def load(self, section: Section, name: str) -> pd.DataFrame | None:
        """An analysis table for a notebook cell, or ``None`` when the section has nothing to show."""
        return None if section.unavailable else self.read(name)

    @property
    def kinds(self) -> dict[str, str]:
        return {name: self.params.scorer_spec(name).kind for name in self.params.scorers}

    def scorers_of(self, kind: str) -> list[str]:
        return [n for n, k in self.kinds.items() if k == kind]

    @property
    def task_models(self) -> list[str]:
        return list(self.params.analysis.task_models) or self.scorers_of("classifier")

    @property
    def main_model(self) -> str | None:
        names = tables.paper_names(self.params.scorers)
        for model in self.task_models:
            if names.get(model) == PAPER_MAIN_MODEL:
                return model
        return self.task_models[0] if self.task_models else None

    @property
    def paper_names(self) -> dict[str, str]:
        return tables.paper_names(self.params.scorers)

    def write_table(
        self, section: Section, key: str, table: pd.DataFrame, title: str, markdown: str | None = None
    ) -> pd.DataFrame:
        markdown = markdown if markdown is not None else tables.to_markdown(table, title)
        tables.write_table(table, self.tables_dir / section.name / key, title, markdown)
        section.tables[key] = table
        section.markdown[key] = markdown
        return table

    def save(self, section: Section, key: str, fig):
        """Write ``<key>.png`` and ``.pdf``; return the (closed) figure for a notebook to show."""
        section.figures[key] = plots.save_figure(fig, self.figures_dir / section.name / key)
        return fig

    def plot_data(self, section: Section, name: str, data: pd.DataFrame) -> None:
        """A CSV for ``dvc plots`` beside the section's figures (a declared output of its stage)."""
        folder = self.figures_dir / section.name
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(data, folder / f"{name}.csv")

    def finish(self, section: Section) -> Section:
        """Write the metrics JSON, and the section's note (if any) where its tables and figures go.

        The folders always exist afterwards: they are DVC outputs, even when a section has no
        figure to draw.
        """
        for folder in (self.tables_dir, self.figures_dir):
            (folder / section.name).mkdir(parents=True, exist_ok=True)
            note = folder / section.name / "NOTE.md"
            if section.note:
                atomic_write_text(note, f"# {section.title}\n\n{section.note}\n")
            else:
                note.unlink(missing_ok=True)  # from an earlier run with less data
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        section.metrics = headline(self.main_model, section.ranking, section.claims, status(section))
        atomic_write_text(self.metrics_dir / f"{section.name}.json", json.dumps(section.metrics, indent=2) + "\n")
        return section


def make_context(
    params: Params,
    analysis_dir: str | os.PathLike = "results/analysis",
    results_dir: str | os.PathLike = "results",
    correctness_dir: str | os.PathLike | None = None,
) -> Context:
    results = Path(results_dir)
    return Context(params, Path(analysis_dir), results / "tables", results / "figures", results / "metrics",
                   Path(correctness_dir) if correctness_dir is not None else results / "correctness")


def _number(value: Any) -> float | None:
    """A JSON number, or ``None`` for a missing value (``null`` in the metrics file)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def status(section: Section) -> str:
    """One word for `dvc metrics show`: the note itself is too long for a table column."""
    return "empty" if section.unavailable else "partial" if section.note else "complete"


def headline(task_model: str | None, ranking: pd.DataFrame | None, claims: list[Claim], state: str) -> dict:
    """The metrics every section writes: :data:`METRIC_KEYS`, ``None`` where a key does not apply."""
    out: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    out.update(task_model=task_model, status=state,
               claims_checked=sum(c.holds is not None for c in claims),
               claims_holding=sum(c.holds is True for c in claims))
    if ranking is not None and not ranking.empty:
        for stat in ("auc", "srcc"):
            if stat in ranking.columns and ranking[stat].notna().any():
                best = ranking.loc[ranking[stat].idxmax()]
                if stat == "auc" and best.get("small_n") is not None:
                    out["best_auc_small_n"] = tables.is_flagged(best["small_n"])
                out[f"best_{stat}_metric"] = str(best["metric"])
                out[f"best_{stat}"] = _number(best[stat])
                out[f"paper_{stat}"] = _number(best.get(f"paper_{stat}"))
    return out


def _ranking(rows: pd.DataFrame, metric: pd.Series, auc: str = "auc") -> pd.DataFrame:
    """Rows for :func:`headline`: one per (scorer, Q), with ours and the paper's numbers."""
    out = pd.DataFrame({"metric": metric, "auc": rows[auc]})
    for col in ("srcc", "paper_auc", "paper_srcc"):
        out[col] = rows[col] if col in rows.columns else float("nan")
    flag = next((c for c in ("small_n_auc", "small_n") if c in rows.columns), None)
    out["small_n"] = rows[flag].to_numpy() if flag else None
    return out.reset_index(drop=True)


def _label(scorer: str, q: str) -> str:
    return scorer if q == "q" else f"{scorer}.{q}"


def _span(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "none"
    return f"{values.min():.3f}" if len(values) == 1 else f"{values.min():.3f}-{values.max():.3f}"


def _why_unavailable(ctx: Context, name: str) -> str | None:
    if name == "section4_nr_iqa" and not ctx.scorers_of("nr_iqa"):
        return "No no-reference IQA scorer is configured (scorers with spec tv, brisque or pyiqa:<metric>)."
    if name == "section5_strong_tg" and not ctx.scorers_of("classifier"):
        return "No classifier is configured, so there is no strong task-guided Q."
    if name == "section6_zsclip" and not ctx.scorers_of("zero_shot"):
        return ("No zero-shot CLIP scorer is configured (spec open_clip:<arch>/<pretrained>). CLIP weights "
                "are not on PyPI, so the offline default profile has none; the paper profile does.")
    if name == "section6_3_mixtures" and "mixtures" in ctx.skipped:
        return f"Not computed: {ctx.skipped['mixtures']}."
    return None


def new_section(ctx: Context, name: str) -> Section:
    """A section to fill cell by cell; marked unavailable (with why) when its scorers are missing."""
    section = Section(name, TITLES[name])
    why = _why_unavailable(ctx, name)
    if why:
        section.note, section.unavailable = why, True
    return section


def finish(ctx: Context, section: Section) -> dict:
    """Write the section's metrics and note; return the metrics (what `dvc metrics show` lists)."""
    return ctx.finish(section).metrics


def show_table(section: Section, key: str):
    """The table as Markdown for a notebook cell (ours with CIs, the paper's value beside)."""
    from IPython.display import Markdown

    return Markdown(section.markdown.get(key, f"_({key}: nothing to show; {section.note})_"))


def show_claims(claims: list[Claim]):
    """The paper's claims with our verdicts, as Markdown for a notebook cell."""
    from IPython.display import Markdown

    return Markdown("\n".join(c.markdown() for c in claims) or "_(no claim can be tested with these scorers)_")


def _first_three(models: list[str]) -> list[tuple[int, str]]:
    """Figure numbers for per-model figures: the paper has three task models."""
    return list(enumerate(models[:3]))


def _model_file(number: int, index: int, model: str) -> str:
    return f"fig{number + index:02d}_{model}"


def _qs_text(variants: tuple[str, ...] = TASK_QS) -> str:
    return ", ".join(plots.Q_SHORT.get(q, q) for q in variants)


# --- Section 4: no-reference IQA (Table 1; Figures 3, 11-13) ---------------------------------


def table1_nr_iqa(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Table 1: every no-reference IQA scorer against every task model."""
    if sec.unavailable:
        return None
    summary = ctx.read("summary")
    summary = summary[summary["task_model"].isin(ctx.task_models) & summary["scorer"].isin(ctx.scorers_of("nr_iqa"))]
    t1 = ctx.write_table(sec, "table1_nr_iqa", ctx.with_significance(tables.table1(summary, ctx.paper_names)), tables.TABLE_TITLES[1])
    main = t1[t1["task_model"] == ctx.main_model]
    sec.ranking = _ranking(main, main["scorer"])
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
        ctx.save(sec, _model_file(11, i, model), plots.scatter_grid(
            means, model, [(s, "q") for s in nr],
            title=f"Accuracy of {model} vs mean no-reference IQA ({', '.join(nr)}), one point per group"))
        for i, model in _first_three(ctx.task_models)
    ]


def claims_section4(ctx: Context, sec: Section, t1: pd.DataFrame | None) -> list[Claim]:
    """Section 4's claims: no-reference IQA is a poor predictor, point-wise and group-wise."""
    if t1 is None or t1.empty:
        return sec.claims
    auc, srcc = t1["auc"], t1["srcc"]
    best = t1.loc[auc.idxmax()] if auc.notna().any() else None
    sec.claims = [
        Claim(f"No-reference IQA barely predicts whether a classifier is right: point-wise AUC 0.48-0.60 "
              f"in Table 1 (verdict: every AUC below {NEAR_CHANCE_AUC}).",
              None if best is None else bool(auc.max() < NEAR_CHANCE_AUC),
              f"AUC {_span(auc)} over {auc.notna().sum()} rows" +
              ("" if best is None else f"; best {best['scorer']} for {best['task_model']} ({best['auc']:.3f})") + "."),
        Claim(f"Group-wise, no-reference IQA tracks accuracy only weakly: |SRCC| at most 0.43 in Table 1 "
              f"(verdict: every |SRCC| below {WEAK_SRCC}).",
              None if srcc.isna().all() else bool(srcc.max() < WEAK_SRCC),
              f"|SRCC| {_span(srcc)}." if srcc.notna().any() else "no group-wise numbers (too few groups)."),
    ]
    caution(sec.claims[0], t1, "small_n_auc")
    caution(sec.claims[1], t1, "small_n_corr")
    return sec.claims


def section4_nr_iqa(ctx: Context) -> Section:
    """Section 4: no-reference IQA (Table 1; Figures 3, 11-13)."""
    sec = new_section(ctx, "section4_nr_iqa")
    t1 = table1_nr_iqa(ctx, sec)
    means = ctx.group_means(sec)
    figure3(ctx, sec, means)
    figures11_13(ctx, sec, means)
    claims_section4(ctx, sec, t1)
    return ctx.finish(sec)


# --- Section 5: strong task-guided Q (Tables 2 and 4; Figures 5, 14-16) -----------------------


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
    sec.ranking = _ranking(main, main["q_model"] + "." + main["q"])
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
        return f"Accuracy of {model} vs its own confidence ({_qs_text()}): no other classifier is configured"
    whose = "the other classifier" if len(sources) == 1 else "the other classifiers"
    return f"Accuracy of {model} vs the confidence ({_qs_text()}) of {whose}: {', '.join(sources)}"


def figures14_16(ctx: Context, sec: Section, means: pd.DataFrame | None) -> list:
    """Figures 14-16: each task model's accuracy against the other classifiers' Q_h, Q_l, Q_p."""
    if means is None or not ctx.groupwise_note(sec):
        return []
    classifiers = ctx.scorers_of("classifier")
    figures = []
    for i, model in _first_three(ctx.task_models):
        sources = [c for c in classifiers if c != model] or [model]
        panels = [(c, q) for q in TASK_QS for c in sources]
        fig = plots.scatter_grid(means, model, panels, ncols=len(sources), title=figure14_title(model, sources))
        figures.append(ctx.save(sec, _model_file(14, i, model), fig))
    return figures


def claims_section5(ctx: Context, sec: Section, t2: pd.DataFrame | None, t4: pd.DataFrame | None) -> list[Claim]:
    """Section 5's claims: own confidence predicts correctness; Q_p is best; own beats another's."""
    if t2 is None or t2.empty:
        return sec.claims
    scored = t2.dropna(subset=["auc"])
    best_q = scored.loc[scored.groupby("m_model")["auc"].idxmax()]
    claims = [
        Claim(f"A classifier's own confidence predicts its correctness: Table 2 AUC 0.73-0.85 "
              f"(verdict: every same-model AUC at least {GOOD_AUC}).",
              None if t2["auc"].isna().all() else bool(t2["auc"].min() >= GOOD_AUC),
              f"same-model AUC {_span(t2['auc'])} ({len(t2)} rows)."),
        Claim("Q_p (max probability) is the best of Q_p, Q_h, Q_l for the same model (Table 2, all three models).",
              None if best_q.empty else bool((best_q["q"] == "q_p").all()),
              "; ".join(f"{r.m_model}: {r.q} ({r.auc:.3f})" for r in best_q.itertuples()) + "."),
    ]
    other = t4[~t4["same_model"]] if t4 is not None else pd.DataFrame()
    if other.empty or other["auc"].isna().all():
        claims.append(Claim("Confidence from the same model beats confidence from another model (Table 4).",
                            None, "only one classifier is configured."))
    else:
        own = t4[t4["same_model"]].groupby("m_model")["auc"].max()
        best_other = other.groupby("m_model")["auc"].max()
        both = pd.concat({"own": own, "other": best_other}, axis=1).dropna()
        claims.append(Claim(
            "Confidence from the same model beats confidence from any other model point-wise (Table 4: "
            "0.826 vs 0.791 for ConvNeXt-B, 0.850 vs 0.801 for ResNet-34, 0.807 vs 0.791 for Swin-B).",
            bool((both["own"] > both["other"]).all()) if not both.empty else None,
            "; ".join(f"{m}: own {r.own:.3f} vs best other {r.other:.3f}" for m, r in both.iterrows()) + "."))
    sec.claims = claims
    caution(claims[0], t2, "small_n_auc")
    caution(claims[1], t2, "small_n_auc")
    caution(claims[2], t4, "small_n_auc")
    return claims


def section5_strong_task_guided(ctx: Context) -> Section:
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


# --- Section 6: ZSCLIP-IQA (Table 3; Figures 7, 17-19) -------------------------------------------


def table3_zsclip(ctx: Context, sec: Section) -> pd.DataFrame | None:
    """Table 3: ZSCLIP-IQA's Q_p, Q_h, Q_l against every task model."""
    if sec.unavailable:
        return None
    summary = ctx.read("summary")
    summary = summary[summary["task_model"].isin(ctx.task_models) & summary["scorer"].isin(ctx.scorers_of("zero_shot"))]
    t3 = ctx.write_table(sec, "table3_zsclip", ctx.with_significance(tables.table3(summary, ctx.paper_names)), tables.TABLE_TITLES[3])
    main = t3[t3["task_model"] == ctx.main_model]
    sec.ranking = _ranking(main, main["scorer"] + "." + main["q"])
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
        ctx.save(sec, _model_file(17, i, model), plots.scatter_grid(
            means, model, [(z, q) for q in TASK_QS], title=f"Accuracy of {model} vs ZSCLIP-IQA ({z}): {_qs_text()}"))
        for i, model in _first_three(ctx.task_models)
    ]


def claims_section6(ctx: Context, sec: Section, t3: pd.DataFrame | None) -> list[Claim]:
    """Section 6's claims: ZSCLIP-IQA's Q_l beats no-reference IQA; it tracks group accuracy."""
    if t3 is None or t3.empty:
        return sec.claims
    q_l = t3[t3["q"] == "q_l"].groupby("task_model")["auc"].max()
    summary = ctx.read("summary")
    nr = summary[(summary["kind"] == "nr_iqa") & summary["task_model"].isin(q_l.index)].groupby("task_model")["auc"].max()
    both = pd.concat({"zs": q_l, "nr": nr}, axis=1).dropna()
    srcc = t3["srcc"]
    sec.claims = [
        Claim("ZSCLIP-IQA's Q_l predicts correctness point-wise better than any no-reference IQA metric "
              "(Tables 1 and 3: AUC 0.67-0.69 vs at most 0.60).",
              bool((both["zs"] > both["nr"]).all()) if not both.empty else None,
              "; ".join(f"{m}: Q_l {r.zs:.3f} vs best NR-IQA {r.nr:.3f}" for m, r in both.iterrows()) + "."
              if not both.empty else "no no-reference IQA scorer to compare with."),
        Claim(f"Group-wise, ZSCLIP-IQA tracks accuracy closely: |SRCC| 0.74-0.96 in Table 3 "
              f"(verdict: every |SRCC| at least {STRONG_SRCC}).",
              None if srcc.isna().all() else bool(srcc.min() >= STRONG_SRCC),
              f"|SRCC| {_span(srcc)}." if srcc.notna().any() else "no group-wise numbers (too few groups)."),
    ]
    caution(sec.claims[0], t3, "small_n_auc")
    caution(sec.claims[1], t3, "small_n_corr")
    return sec.claims


def section6_zsclip(ctx: Context) -> Section:
    """Section 6: ZSCLIP-IQA (Table 3; Figures 7, 17-19)."""
    sec = new_section(ctx, "section6_zsclip")
    t3 = table3_zsclip(ctx, sec)
    means = ctx.group_means(sec)
    figure7(ctx, sec, means)
    figures17_19(ctx, sec, means)
    claims_section6(ctx, sec, t3)
    return ctx.finish(sec)


# --- Appendix G: content control (Figure 20) -----------------------------------------------------


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
            labels = [f"{level}:{_label(s, q)}" for s, q in zip(main["scorer"], main["q"], strict=True)]
            sec.ranking = _ranking(main, labels, "mean_auc")
            break
    return out


def figure20(ctx: Context, sec: Section, per_image: pd.DataFrame, per_label: pd.DataFrame) -> list:
    """Figure 20, one per task model: mean AUC per metric, (a) per image ID and (b) per label."""
    import matplotlib.pyplot as plt

    figures = []
    for model in ctx.task_models:
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * max(len(per_image["scorer"].unique()) * 2, 6) + 1.5))
        plots.bar_mean_auc(per_image, model, ax=axes[0], title="(a) per image ID (clean + corrupted variants)")
        plots.bar_mean_auc(per_label, model, ax=axes[1], title="(b) per label")
        fig.suptitle(f"Content held fixed: mean 5-fold CV AUC of each Q for the correctness of {model}")
        fig.tight_layout()
        figures.append(ctx.save(sec, f"fig20_{model}", fig))
    return figures


def claims_appendix_g(ctx: Context, sec: Section, per_label: pd.DataFrame) -> list[Claim]:
    """Appendix G's claim: per label, no-reference IQA stays near chance."""
    ref = paper_text_values()["per_label_nr_iqa"]
    rows = per_label[per_label["task_model"].isin(ctx.task_models) & (per_label["kind"] == "nr_iqa")]
    mauc = rows["mean_auc"].dropna()
    sec.claims = [Claim(
        f"With the label held fixed, no-reference IQA stays near chance: mean AUC {ref['mauc']} "
        f"(sd {ref['mauc_sd']}) over {ref['labels']} labels (verdict: every per-label mean AUC below {NEAR_CHANCE_AUC}).",
        bool(mauc.max() < NEAR_CHANCE_AUC) if not mauc.empty else None,
        f"per-label mean AUC {_span(mauc)} over {len(mauc)} (NR-IQA, task model) rows." if not mauc.empty
        else "no no-reference IQA scorer with a per-label fit.",
    )]
    caution(sec.claims[0], rows, "small_n")
    return sec.claims


def appendix_g_content(ctx: Context) -> Section:
    """Appendix G: content control, per label and per image ID (Figure 20)."""
    sec = new_section(ctx, "appendix_g_content")
    per_image, per_label = ctx.read("per_image"), ctx.read("per_label")
    content_tables(ctx, sec, per_image, per_label)
    figure20(ctx, sec, per_image, per_label)
    claims_appendix_g(ctx, sec, per_label)
    return ctx.finish(sec)


# --- Section 6.3: mild-corruption mixtures (Figures 21-22) ---------------------------------------


def mixtures_table(ctx: Context, sec: Section, summary: pd.DataFrame | None) -> pd.DataFrame | None:
    """Mean point-wise AUC over the mixtures, per (task model, metric)."""
    if summary is None:
        return None
    summary = ctx.write_table(sec, "mixtures_mean_auc", summary[summary["task_model"].isin(ctx.task_models)],
                              "Mean point-wise AUC over the mixtures p_c = 1%..20%")
    ref = paper_text_values()["mixtures_mauc"]
    sec.markdown["paper"] = f"Paper: mAUC {ref['zsclip_q_l']} for ZSCLIP-IQA Q_l, {ref['clip_iqa']} for CLIP-IQA (the next best)."
    main = summary[summary["task_model"] == ctx.main_model]
    sec.ranking = _ranking(main, [_label(s, q) for s, q in zip(main["scorer"], main["q"], strict=True)], "mean_auc")
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


def claims_mixtures(ctx: Context, sec: Section, summary: pd.DataFrame | None) -> list[Claim]:
    """Section 6.3's claims: mild corruption is hard to detect; ZSCLIP-IQA Q_l beats CLIP-IQA."""
    if summary is None or summary["mean_auc"].isna().all():
        return sec.claims
    ref = paper_text_values()["mixtures_mauc"]
    best = summary.loc[summary["mean_auc"].idxmax()]
    names = summary["scorer"].map(ctx.paper_names)
    zs = summary[(names == "zsclip") & (summary["q"] == "q_l")]["mean_auc"]
    clip = summary[names == "CLIP-IQA"]["mean_auc"]
    sec.claims = [
        Claim(f"On mild-corruption mixtures every metric is a weak predictor: the best mean AUC is {ref['zsclip_q_l']} "
              f"(verdict: every mean AUC below {GOOD_AUC}).",
              bool(summary["mean_auc"].max() < GOOD_AUC),
              f"mean AUC {_span(summary['mean_auc'])}; best {_label(best['scorer'], best['q'])} for "
              f"{best['task_model']} ({best['mean_auc']:.3f})."),
        Claim(f"ZSCLIP-IQA's Q_l beats CLIP-IQA on the mixtures ({ref['zsclip_q_l']} vs {ref['clip_iqa']}).",
              bool(zs.mean() > clip.mean()) if len(zs) and len(clip) else None,
              f"Q_l {zs.mean():.3f} vs CLIP-IQA {clip.mean():.3f}." if len(zs) and len(clip)
              else "ZSCLIP-IQA and CLIP-IQA are not both configured."),
    ]
    caution(sec.claims[0], summary, "small_n")
    caution(sec.claims[1], summary, "small_n")
    return sec.claims


def section6_3_mixtures(ctx: Context) -> Section:
    """Section 6.3 / Appendix H: mild-corruption mixtures (Figures 21-22)."""
    sec = new_section(ctx, "section6_3_mixtures")
    summary = mixtures_table(ctx, sec, ctx.load(sec, "mixtures_summary"))
    figure21(ctx, sec, ctx.load(sec, "mixtures_histogram"), summary)
    figure22(ctx, sec, ctx.load(sec, "mixtures_auc"), summary)
    claims_mixtures(ctx, sec, summary)
    return ctx.finish(sec)


SECTIONS = {
    "section4_nr_iqa": section4_nr_iqa,
    "section5_strong_tg": section5_strong_task_guided,
    "section6_zsclip": section6_zsclip,
    "appendix_g_content": appendix_g_content,
    "section6_3_mixtures": section6_3_mixtures,
}
